"""PyTorch's time for bissl-bench's `r50b32` row (tools/cpu_anchor.py runs it): one SGD training step
(momentum 0.9, cross-entropy, 100 classes) of ResNet-50 with the ImageNet stem on 32 RGB images of 96x96,
channels_last, on the CPU. ResNet-50 is written out here (torchvision is not needed). For measuring only:
needs torch, never a build or CI dependency. Usage: python torch_cpu_r50.py [threads]; prints one JSON line (ms)."""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.c1, self.b1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.c2, self.b2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.c3, self.b3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)))
        y = self.b3(self.c3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    def __init__(self, classes=100):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for i, (width, n) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
            for j in range(n):
                blocks.append(Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    torch.manual_seed(1)
    net = ResNet50().to(memory_format=torch.channels_last).train()
    x = torch.randn(32, 3, 96, 96).to(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (32,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(2):
        step()
    t = []
    for _ in range(5):
        a = time.perf_counter()
        step()
        t.append((time.perf_counter() - a) * 1e3)
    print(json.dumps({"r50_96px_b32_step_ms": sorted(t)[len(t) // 2], "torch": torch.__version__}))


if __name__ == "__main__":
    main()
