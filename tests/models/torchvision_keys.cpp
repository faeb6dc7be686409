// The state_dict keys and shapes (PyTorch layout, OIHW) of torchvision's
// resnet18() and resnet50(), generated from torchvision 0.29 with
//   {k: tuple(v.shape) for k, v in torchvision.models.resnet18().state_dict().items()}
// One "name dims" line each (dims comma-separated; empty for a scalar).
namespace bissl_test {
const char* torchvision_resnet18_keys() {
  return R"(
conv1.weight 64,3,7,7
bn1.weight 64
bn1.bias 64
bn1.running_mean 64
bn1.running_var 64
bn1.num_batches_tracked 
layer1.0.conv1.weight 64,64,3,3
layer1.0.bn1.weight 64
layer1.0.bn1.bias 64
layer1.0.bn1.running_mean 64
layer1.0.bn1.running_var 64
layer1.0.bn1.num_batches_tracked 
layer1.0.conv2.weight 64,64,3,3
layer1.0.bn2.weight 64
layer1.0.bn2.bias 64
layer1.0.bn2.running_mean 64
layer1.0.bn2.running_var 64
layer1.0.bn2.num_batches_tracked 
layer1.1.conv1.weight 64,64,3,3
layer1.1.bn1.weight 64
layer1.1.bn1.bias 64
layer1.1.bn1.running_mean 64
layer1.1.bn1.running_var 64
layer1.1.bn1.num_batches_tracked 
layer1.1.conv2.weight 64,64,3,3
layer1.1.bn2.weight 64
layer1.1.bn2.bias 64
layer1.1.bn2.running_mean 64
layer1.1.bn2.running_var 64
layer1.1.bn2.num_batches_tracked 
layer2.0.conv1.weight 128,64,3,3
layer2.0.bn1.weight 128
layer2.0.bn1.bias 128
layer2.0.bn1.running_mean 128
layer2.0.bn1.running_var 128
layer2.0.bn1.num_batches_tracked 
layer2.0.conv2.weight 128,128,3,3
layer2.0.bn2.weight 128
layer2.0.bn2.bias 128
layer2.0.bn2.running_mean 128
layer2.0.bn2.running_var 128
layer2.0.bn2.num_batches_tracked 
layer2.0.downsample.0.weight 128,64,1,1
layer2.0.downsample.1.weight 128
layer2.0.downsample.1.bias 128
layer2.0.downsample.1.running_mean 128
layer2.0.downsample.1.running_var 128
layer2.0.downsample.1.num_batches_tracked 
layer2.1.conv1.weight 128,128,3,3
layer2.1.bn1.weight 128
layer2.1.bn1.bias 128
layer2.1.bn1.running_mean 128
layer2.1.bn1.running_var 128
layer2.1.bn1.num_batches_tracked 
layer2.1.conv2.weight 128,128,3,3
layer2.1.bn2.weight 128
layer2.1.bn2.bias 128
layer2.1.bn2.running_mean 128
layer2.1.bn2.running_var 128
layer2.1.bn2.num_batches_tracked 
layer3.0.conv1.weight 256,128,3,3
layer3.0.bn1.weight 256
layer3.0.bn1.bias 256
layer3.0.bn1.running_mean 256
layer3.0.bn1.running_var 256
layer3.0.bn1.num_batches_tracked 
layer3.0.conv2.weight 256,256,3,3
layer3.0.bn2.weight 256
layer3.0.bn2.bias 256
layer3.0.bn2.running_mean 256
layer3.0.bn2.running_var 256
layer3.0.bn2.num_batches_tracked 
layer3.0.downsample.0.weight 256,128,1,1
layer3.0.downsample.1.weight 256
layer3.0.downsample.1.bias 256
layer3.0.downsample.1.running_mean 256
layer3.0.downsample.1.running_var 256
layer3.0.downsample.1.num_batches_tracked 
layer3.1.conv1.weight 256,256,3,3
layer3.1.bn1.weight 256
layer3.1.bn1.bias 256
layer3.1.bn1.running_mean 256
layer3.1.bn1.running_var 256
layer3.1.bn1.num_batches_tracked 
layer3.1.conv2.weight 256,256,3,3
layer3.1.bn2.weight 256
layer3.1.bn2.bias 256
layer3.1.bn2.running_mean 256
layer3.1.bn2.running_var 256
layer3.1.bn2.num_batches_tracked 
layer4.0.conv1.weight 512,256,3,3
layer4.0.bn1.weight 512
layer4.0.bn1.bias 512
layer4.0.bn1.running_mean 512
layer4.0.bn1.running_var 512
layer4.0.bn1.num_batches_tracked 
layer4.0.conv2.weight 512,512,3,3
layer4.0.bn2.weight 512
layer4.0.bn2.bias 512
layer4.0.bn2.running_mean 512
layer4.0.bn2.running_var 512
layer4.0.bn2.num_batches_tracked 
layer4.0.downsample.0.weight 512,256,1,1
layer4.0.downsample.1.weight 512
layer4.0.downsample.1.bias 512
layer4.0.downsample.1.running_mean 512
layer4.0.downsample.1.running_var 512
layer4.0.downsample.1.num_batches_tracked 
layer4.1.conv1.weight 512,512,3,3
layer4.1.bn1.weight 512
layer4.1.bn1.bias 512
layer4.1.bn1.running_mean 512
layer4.1.bn1.running_var 512
layer4.1.bn1.num_batches_tracked 
layer4.1.conv2.weight 512,512,3,3
layer4.1.bn2.weight 512
layer4.1.bn2.bias 512
layer4.1.bn2.running_mean 512
layer4.1.bn2.running_var 512
layer4.1.bn2.num_batches_tracked 
fc.weight 1000,512
fc.bias 1000
)";
}
const char* torchvision_resnet50_keys() {
  return R"(
conv1.weight 64,3,7,7
bn1.weight 64
bn1.bias 64
bn1.running_mean 64
bn1.running_var 64
bn1.num_batches_tracked 
layer1.0.conv1.weight 64,64,1,1
layer1.0.bn1.weight 64
layer1.0.bn1.bias 64
layer1.0.bn1.running_mean 64
layer1.0.bn1.running_var 64
layer1.0.bn1.num_batches_tracked 
layer1.0.conv2.weight 64,64,3,3
layer1.0.bn2.weight 64
layer1.0.bn2.bias 64
layer1.0.bn2.running_mean 64
layer1.0.bn2.running_var 64
layer1.0.bn2.num_batches_tracked 
layer1.0.conv3.weight 256,64,1,1
layer1.0.bn3.weight 256
layer1.0.bn3.bias 256
layer1.0.bn3.running_mean 256
layer1.0.bn3.running_var 256
layer1.0.bn3.num_batches_tracked 
layer1.0.downsample.0.weight 256,64,1,1
layer1.0.downsample.1.weight 256
layer1.0.downsample.1.bias 256
layer1.0.downsample.1.running_mean 256
layer1.0.downsample.1.running_var 256
layer1.0.downsample.1.num_batches_tracked 
layer1.1.conv1.weight 64,256,1,1
layer1.1.bn1.weight 64
layer1.1.bn1.bias 64
layer1.1.bn1.running_mean 64
layer1.1.bn1.running_var 64
layer1.1.bn1.num_batches_tracked 
layer1.1.conv2.weight 64,64,3,3
layer1.1.bn2.weight 64
layer1.1.bn2.bias 64
layer1.1.bn2.running_mean 64
layer1.1.bn2.running_var 64
layer1.1.bn2.num_batches_tracked 
layer1.1.conv3.weight 256,64,1,1
layer1.1.bn3.weight 256
layer1.1.bn3.bias 256
layer1.1.bn3.running_mean 256
layer1.1.bn3.running_var 256
layer1.1.bn3.num_batches_tracked 
layer1.2.conv1.weight 64,256,1,1
layer1.2.bn1.weight 64
layer1.2.bn1.bias 64
layer1.2.bn1.running_mean 64
layer1.2.bn1.running_var 64
layer1.2.bn1.num_batches_tracked 
layer1.2.conv2.weight 64,64,3,3
layer1.2.bn2.weight 64
layer1.2.bn2.bias 64
layer1.2.bn2.running_mean 64
layer1.2.bn2.running_var 64
layer1.2.bn2.num_batches_tracked 
layer1.2.conv3.weight 256,64,1,1
layer1.2.bn3.weight 256
layer1.2.bn3.bias 256
layer1.2.bn3.running_mean 256
layer1.2.bn3.running_var 256
layer1.2.bn3.num_batches_tracked 
layer2.0.conv1.weight 128,256,1,1
layer2.0.bn1.weight 128
layer2.0.bn1.bias 128
layer2.0.bn1.running_mean 128
layer2.0.bn1.running_var 128
layer2.0.bn1.num_batches_tracked 
layer2.0.conv2.weight 128,128,3,3
layer2.0.bn2.weight 128
layer2.0.bn2.bias 128
layer2.0.bn2.running_mean 128
layer2.0.bn2.running_var 128
layer2.0.bn2.num_batches_tracked 
layer2.0.conv3.weight 512,128,1,1
layer2.0.bn3.weight 512
layer2.0.bn3.bias 512
layer2.0.bn3.running_mean 512
layer2.0.bn3.running_var 512
layer2.0.bn3.num_batches_tracked 
layer2.0.downsample.0.weight 512,256,1,1
layer2.0.downsample.1.weight 512
layer2.0.downsample.1.bias 512
layer2.0.downsample.1.running_mean 512
layer2.0.downsample.1.running_var 512
layer2.0.downsample.1.num_batches_tracked 
layer2.1.conv1.weight 128,512,1,1
layer2.1.bn1.weight 128
layer2.1.bn1.bias 128
layer2.1.bn1.running_mean 128
layer2.1.bn1.running_var 128
layer2.1.bn1.num_batches_tracked 
layer2.1.conv2.weight 128,128,3,3
layer2.1.bn2.weight 128
layer2.1.bn2.bias 128
layer2.1.bn2.running_mean 128
layer2.1.bn2.running_var 128
layer2.1.bn2.num_batches_tracked 
layer2.1.conv3.weight 512,128,1,1
layer2.1.bn3.weight 512
layer2.1.bn3.bias 512
layer2.1.bn3.running_mean 512
layer2.1.bn3.running_var 512
layer2.1.bn3.num_batches_tracked 
layer2.2.conv1.weight 128,512,1,1
layer2.2.bn1.weight 128
layer2.2.bn1.bias 128
layer2.2.bn1.running_mean 128
layer2.2.bn1.running_var 128
layer2.2.bn1.num_batches_tracked 
layer2.2.conv2.weight 128,128,3,3
layer2.2.bn2.weight 128
layer2.2.bn2.bias 128
layer2.2.bn2.running_mean 128
layer2.2.bn2.running_var 128
layer2.2.bn2.num_batches_tracked 
layer2.2.conv3.weight 512,128,1,1
layer2.2.bn3.weight 512
layer2.2.bn3.bias 512
layer2.2.bn3.running_mean 512
layer2.2.bn3.running_var 512
layer2.2.bn3.num_batches_tracked 
layer2.3.conv1.weight 128,512,1,1
layer2.3.bn1.weight 128
layer2.3.bn1.bias 128
layer2.3.bn1.running_mean 128
layer2.3.bn1.running_var 128
layer2.3.bn1.num_batches_tracked 
layer2.3.conv2.weight 128,128,3,3
layer2.3.bn2.weight 128
layer2.3.bn2.bias 128
layer2.3.bn2.running_mean 128
layer2.3.bn2.running_var 128
layer2.3.bn2.num_batches_tracked 
layer2.3.conv3.weight 512,128,1,1
layer2.3.bn3.weight 512
layer2.3.bn3.bias 512
layer2.3.bn3.running_mean 512
layer2.3.bn3.running_var 512
layer2.3.bn3.num_batches_tracked 
layer3.0.conv1.weight 256,512,1,1
layer3.0.bn1.weight 256
layer3.0.bn1.bias 256
layer3.0.bn1.running_mean 256
layer3.0.bn1.running_var 256
layer3.0.bn1.num_batches_tracked 
layer3.0.conv2.weight 256,256,3,3
layer3.0.bn2.weight 256
layer3.0.bn2.bias 256
layer3.0.bn2.running_mean 256
layer3.0.bn2.running_var 256
layer3.0.bn2.num_batches_tracked 
layer3.0.conv3.weight 1024,256,1,1
layer3.0.bn3.weight 1024
layer3.0.bn3.bias 1024
layer3.0.bn3.running_mean 1024
layer3.0.bn3.running_var 1024
layer3.0.bn3.num_batches_tracked 
layer3.0.downsample.0.weight 1024,512,1,1
layer3.0.downsample.1.weight 1024
layer3.0.downsample.1.bias 1024
layer3.0.downsample.1.running_mean 1024
layer3.0.downsample.1.running_var 1024
layer3.0.downsample.1.num_batches_tracked 
layer3.1.conv1.weight 256,1024,1,1
layer3.1.bn1.weight 256
layer3.1.bn1.bias 256
layer3.1.bn1.running_mean 256
layer3.1.bn1.running_var 256
layer3.1.bn1.num_batches_tracked 
layer3.1.conv2.weight 256,256,3,3
layer3.1.bn2.weight 256
layer3.1.bn2.bias 256
layer3.1.bn2.running_mean 256
layer3.1.bn2.running_var 256
layer3.1.bn2.num_batches_tracked 
layer3.1.conv3.weight 1024,256,1,1
layer3.1.bn3.weight 1024
layer3.1.bn3.bias 1024
layer3.1.bn3.running_mean 1024
layer3.1.bn3.running_var 1024
layer3.1.bn3.num_batches_tracked 
layer3.2.conv1.weight 256,1024,1,1
layer3.2.bn1.weight 256
layer3.2.bn1.bias 256
layer3.2.bn1.running_mean 256
layer3.2.bn1.running_var 256
layer3.2.bn1.num_batches_tracked 
layer3.2.conv2.weight 256,256,3,3
layer3.2.bn2.weight 256
layer3.2.bn2.bias 256
layer3.2.bn2.running_mean 256
layer3.2.bn2.running_var 256
layer3.2.bn2.num_batches_tracked 
layer3.2.conv3.weight 1024,256,1,1
layer3.2.bn3.weight 1024
layer3.2.bn3.bias 1024
layer3.2.bn3.running_mean 1024
layer3.2.bn3.running_var 1024
layer3.2.bn3.num_batches_tracked 
layer3.3.conv1.weight 256,1024,1,1
layer3.3.bn1.weight 256
layer3.3.bn1.bias 256
layer3.3.bn1.running_mean 256
layer3.3.bn1.running_var 256
layer3.3.bn1.num_batches_tracked 
layer3.3.conv2.weight 256,256,3,3
layer3.3.bn2.weight 256
layer3.3.bn2.bias 256
layer3.3.bn2.running_mean 256
layer3.3.bn2.running_var 256
layer3.3.bn2.num_batches_tracked 
layer3.3.conv3.weight 1024,256,1,1
layer3.3.bn3.weight 1024
layer3.3.bn3.bias 1024
layer3.3.bn3.running_mean 1024
layer3.3.bn3.running_var 1024
layer3.3.bn3.num_batches_tracked 
layer3.4.conv1.weight 256,1024,1,1
layer3.4.bn1.weight 256
layer3.4.bn1.bias 256
layer3.4.bn1.running_mean 256
layer3.4.bn1.running_var 256
layer3.4.bn1.num_batches_tracked 
layer3.4.conv2.weight 256,256,3,3
layer3.4.bn2.weight 256
layer3.4.bn2.bias 256
layer3.4.bn2.running_mean 256
layer3.4.bn2.running_var 256
layer3.4.bn2.num_batches_tracked 
layer3.4.conv3.weight 1024,256,1,1
layer3.4.bn3.weight 1024
layer3.4.bn3.bias 1024
layer3.4.bn3.running_mean 1024
layer3.4.bn3.running_var 1024
layer3.4.bn3.num_batches_tracked 
layer3.5.conv1.weight 256,1024,1,1
layer3.5.bn1.weight 256
layer3.5.bn1.bias 256
layer3.5.bn1.running_mean 256
layer3.5.bn1.running_var 256
layer3.5.bn1.num_batches_tracked 
layer3.5.conv2.weight 256,256,3,3
layer3.5.bn2.weight 256
layer3.5.bn2.bias 256
layer3.5.bn2.running_mean 256
layer3.5.bn2.running_var 256
layer3.5.bn2.num_batches_tracked 
layer3.5.conv3.weight 1024,256,1,1
layer3.5.bn3.weight 1024
layer3.5.bn3.bias 1024
layer3.5.bn3.running_mean 1024
layer3.5.bn3.running_var 1024
layer3.5.bn3.num_batches_tracked 
layer4.0.conv1.weight 512,1024,1,1
layer4.0.bn1.weight 512
layer4.0.bn1.bias 512
layer4.0.bn1.running_mean 512
layer4.0.bn1.running_var 512
layer4.0.bn1.num_batches_tracked 
layer4.0.conv2.weight 512,512,3,3
layer4.0.bn2.weight 512
layer4.0.bn2.bias 512
layer4.0.bn2.running_mean 512
layer4.0.bn2.running_var 512
layer4.0.bn2.num_batches_tracked 
layer4.0.conv3.weight 2048,512,1,1
layer4.0.bn3.weight 2048
layer4.0.bn3.bias 2048
layer4.0.bn3.running_mean 2048
layer4.0.bn3.running_var 2048
layer4.0.bn3.num_batches_tracked 
layer4.0.downsample.0.weight 2048,1024,1,1
layer4.0.downsample.1.weight 2048
layer4.0.downsample.1.bias 2048
layer4.0.downsample.1.running_mean 2048
layer4.0.downsample.1.running_var 2048
layer4.0.downsample.1.num_batches_tracked 
layer4.1.conv1.weight 512,2048,1,1
layer4.1.bn1.weight 512
layer4.1.bn1.bias 512
layer4.1.bn1.running_mean 512
layer4.1.bn1.running_var 512
layer4.1.bn1.num_batches_tracked 
layer4.1.conv2.weight 512,512,3,3
layer4.1.bn2.weight 512
layer4.1.bn2.bias 512
layer4.1.bn2.running_mean 512
layer4.1.bn2.running_var 512
layer4.1.bn2.num_batches_tracked 
layer4.1.conv3.weight 2048,512,1,1
layer4.1.bn3.weight 2048
layer4.1.bn3.bias 2048
layer4.1.bn3.running_mean 2048
layer4.1.bn3.running_var 2048
layer4.1.bn3.num_batches_tracked 
layer4.2.conv1.weight 512,2048,1,1
layer4.2.bn1.weight 512
layer4.2.bn1.bias 512
layer4.2.bn1.running_mean 512
layer4.2.bn1.running_var 512
layer4.2.bn1.num_batches_tracked 
layer4.2.conv2.weight 512,512,3,3
layer4.2.bn2.weight 512
layer4.2.bn2.bias 512
layer4.2.bn2.running_mean 512
layer4.2.bn2.running_var 512
layer4.2.bn2.num_batches_tracked 
layer4.2.conv3.weight 2048,512,1,1
layer4.2.bn3.weight 2048
layer4.2.bn3.bias 2048
layer4.2.bn3.running_mean 2048
layer4.2.bn3.running_var 2048
layer4.2.bn3.num_batches_tracked 
fc.weight 1000,2048
fc.bias 1000
)";
}
}  // namespace bissl_test
