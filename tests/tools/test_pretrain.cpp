// bissl-pretrain end to end on real Fashion-MNIST (a small slice): the loss
// goes down, a run stopped and resumed ends with weights identical to an
// uninterrupted one, and bad configs fail with one clear line.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/datasets.h"
#include "engine/io/safetensors.h"
#include "tools/common/cli_fields.h"
#include "tools/pretrain/build.h"
#include "tools/pretrain/run.h"

using namespace bissl;
namespace fs = std::filesystem;

namespace {

bool have_fashion_mnist() {
  bool ok = fs::exists("/usr/share/datasets/fashion-mnist");
  if (!ok) std::printf("SKIPPED: pretrain tests (dataset-fashion-mnist is not installed; run tools/setup.sh)\n");
  return ok;
}

pretrain::Config tiny(const std::string& out, const std::string& method = "simclr") {
  pretrain::Config c;
  c.limit = 512;
  c.model.width = 0.125;
  c.batch_size = 32;
  c.method.proj_hidden = 32, c.method.proj_out = 16;
  c.method.name = method;
  c.lr = 4.8;  // the spec's LARS lr
  c.warmup = 2;
  c.device = "cpu";
  c.workers = 2;
  c.out = out;
  c.log_every = 1;
  c.checkpoint_every = 0;
  return c;
}

std::string tmpdir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("bissl_pretrain_test_" + name);
  fs::remove_all(d);
  return d.string();
}

std::vector<double> losses(const std::string& dir) {
  std::vector<double> r;
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) r.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return r;
}

}  // namespace

TEST_SUITE("pretrain") {
  TEST_CASE("SimCLR on Fashion-MNIST: a few steps lower the loss") {
    if (!have_fashion_mnist()) return;
    std::string out = tmpdir("simclr");
    auto s = pretrain::run(tiny(out), "", 0);
    CHECK(s.steps == 16);  // one epoch of 512 images in batches of 32
    auto l = losses(out);
    REQUIRE(l.size() == 16);
    double first = (l[0] + l[1] + l[2]) / 3, last = (l[13] + l[14] + l[15]) / 3;
    MESSAGE("NT-Xent first 3 steps ", first, ", last 3 steps ", last);
    CHECK(last < first);
    for (const char* f : {"backbone.safetensors", "objective.safetensors", "checkpoint.safetensors", "config.toml",
                          "summary.json"})
      CHECK(fs::exists(out + "/" + f));
    // The backbone file is in PyTorch layout (conv weights OIHW).
    auto bb = io::load_safetensors(out + "/backbone.safetensors");
    CHECK(bb.get("conv1.weight").shape() == Shape{8, 1, 3, 3});
  }

  TEST_CASE("killed after k steps and resumed: identical weights to an uninterrupted run") {
    if (!have_fashion_mnist()) return;
    std::string a = tmpdir("full"), b = tmpdir("resumed");
    auto cfg = tiny(a, "byol");  // BYOL: EMA target state must resume too
    cfg.steps = 10;
    pretrain::run(cfg);
    auto cb = cfg;
    cb.out = b;
    pretrain::run(cb, "", 4);  // stops after 4 steps, checkpoint written
    pretrain::run(cb, b + "/checkpoint.safetensors");
    auto fa = io::load_safetensors(a + "/checkpoint.safetensors"), fb = io::load_safetensors(b + "/checkpoint.safetensors");
    REQUIRE(fa.tensors.size() == fb.tensors.size());
    size_t differing = 0;
    for (size_t i = 0; i < fa.tensors.size(); ++i) {
      const Tensor &x = fa.tensors[i].second, &y = fb.tensors[i].second;
      CHECK(fa.tensors[i].first == fb.tensors[i].first);
      if (x.nbytes() != y.nbytes() || std::memcmp(x.raw(), y.raw(), x.nbytes()) != 0) {
        ++differing;
        INFO("differs: ", fa.tensors[i].first);
      }
    }
    CHECK(differing == 0);
    CHECK(fa.metadata.at("step") == "10");
    CHECK(fb.metadata.at("step") == "10");
  }

  TEST_CASE("MAE with a ViT: the shipped config loads and a few steps lower the loss") {
    if (!have_fashion_mnist()) return;
    std::string out = tmpdir("mae");
    pretrain::Config c;
    c.load_toml(std::string(BISSL_SOURCE_DIR) + "/configs/pretrain_fashion_mnist_mae.toml");
    c.limit = 128, c.batch_size = 16, c.steps = 8, c.device = "cpu", c.out = out, c.log_every = 1;
    c.checkpoint_every = 0, c.warmup = 1;
    pretrain::run(c);
    auto l = losses(out);
    REQUIRE(l.size() == 8);
    MESSAGE("MAE loss first ", l.front(), ", last ", l.back());
    CHECK(l.back() < l.front());
  }

  TEST_CASE("normalize = pretext: statistics of the pretext images, stored with the run, required downstream") {
    if (!have_fashion_mnist()) return;
    const std::string out = tmpdir("normalize");
    pretrain::Config c = tiny(out);
    c.steps = 2;
    c.normalize = "pretext";
    c.stats_images = 300;
    pretrain::run(c);
    // The statistics of 300 evenly spaced images of the 512 pretrained on.
    auto set = pretrain::load_data(c);
    data::ChannelStats st = data::channel_stats(*set, data::evenly_spaced(512, 300));
    auto j = nlohmann::json::parse(std::ifstream(out + "/normalization.json"));
    CHECK(j["normalize"] == "pretext");
    CHECK(j["images"] == 300);
    CHECK(j["mean"][0].get<float>() == float(st.mean[0]));
    CHECK(j["std"][0].get<float>() == float(st.std[0]));
    CHECK(std::abs(st.mean[0] - 0.286) < 0.03);  // near the whole training set's (data::default_mean)
    // In the backbone's metadata; every later stage takes them from there.
    const std::string bb = out + "/backbone.safetensors";
    data::Normalization n = pretrain::normalization_in_file(bb);
    CHECK(n.mean == std::vector<float>{float(st.mean[0])});
    CHECK(n.std == std::vector<float>{float(st.std[0])});
    CHECK(pretrain::normalization_for(c, bb, 1) == n);
    // Without a backbone that carries them: refused. A config naming other
    // constants than the backbone's: refused, both named.
    CHECK_THROWS_WITH_AS(pretrain::normalization_for(c, "", 1), doctest::Contains("carries no normalisation"), Error);
    pretrain::Config d = c;
    d.normalize = "default";
    CHECK_THROWS_WITH_AS(pretrain::normalization_for(d, bb, 1), doctest::Contains("normalised by mean ["), Error);
    CHECK(pretrain::normalization_for(d, "", 1).empty());
    d.normalize = "imagenet";
    CHECK(pretrain::normalization_for(d, "", 1) == data::Normalization{{0.449f}, {0.226f}});
    // The default writes no metadata: its backbone files are as before.
    const std::string out2 = tmpdir("normalize_default");
    pretrain::Config e = tiny(out2);
    e.steps = 1;
    pretrain::run(e);
    CHECK(pretrain::normalization_in_file(out2 + "/backbone.safetensors").empty());
    CHECK_THROWS_WITH_AS(pretrain::normalization_for(c, out2 + "/backbone.safetensors", 1),
                         doctest::Contains("carries no normalisation"), Error);
  }

  TEST_CASE("config errors are one clear line") {
    pretrain::Config c;
    CHECK_THROWS_WITH_AS(c.set("train.nope=1"), doctest::Contains("unknown key 'train.nope'"), Error);
    CHECK_THROWS_WITH_AS(c.set("train.lr=fast"), doctest::Contains("expects a number"), Error);
    c.set("method.name=mae");
    CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("MAE needs a ViT"), Error);
    CHECK_THROWS_WITH_AS(c.load_toml("/nonexistent.toml"), doctest::Contains("expected a readable TOML file"), Error);
    CHECK_THROWS_WITH_AS(pretrain::run(tiny(tmpdir("bad")), "/nonexistent/checkpoint.safetensors"),
                         doctest::Contains("nonexistent"), Error);
  }

  TEST_CASE("a spec's fields as command-line flags: names, renames, skips, defaults and ranges from its description") {
    models::BackboneSpec spec;
    spec.stem = "imagenet";  // the tool's default, shown in --help
    CLI::App app{"t"};
    settings::add_field_flags(&app, spec, {{"arch", "--model"}}, {"drop_path"});
    const std::string help = app.help();
    CHECK(help.find("--model") != std::string::npos);
    CHECK(help.find("--arch") == std::string::npos);
    CHECK(help.find("--patch-size") != std::string::npos);
    CHECK(help.find("--drop-path") == std::string::npos);
    CHECK(help.find("ResNet channel multiplier") != std::string::npos);  // the field's doc
    CHECK(help.find("=imagenet") != std::string::npos);
    app.parse(std::vector<std::string>{"0.5", "--width", "vit_small", "--model"});  // CLI11 takes them reversed
    CHECK(spec.arch == "vit_small");
    CHECK(spec.width == 0.5);
    auto refused = [&](std::vector<std::string> args) {
      std::reverse(args.begin(), args.end());
      try {
        app.parse(args);
      } catch (const CLI::ParseError& e) {
        return std::string(e.what());
      }
      return std::string();
    };
    CHECK(refused({"--width", "-1"}) == "--width: must be > 0, found -1");
    CHECK(refused({"--pool", "max"}) == "--pool: must be one of cls, mean, found 'max'");
    CHECK(refused({"--patch-size", "0"}) == "--patch-size: must be >= 1, found 0");
    CHECK_FALSE(refused({"--drop-path", "0.1"}).empty());  // skipped: not a flag
  }
}
