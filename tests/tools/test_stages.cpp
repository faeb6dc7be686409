// The stage configs (settings binder, the pipeline config) and the whole
// pipeline on the real Fashion-MNIST in its --quick preset: every stage runs,
// the report has the FT vs BiSSL+FT table, a second run skips every stage and
// reproduces it, and the BiSSL stage resumes bit-identically.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/datasets.h"
#include "models/resnet.h"
#include "models/torch_state.h"
#include "tools/stages/classify.h"
#include "tests/support.h"
#include "tools/common/settings.h"
#include "tools/stages/bissl_stage.h"
#include "tools/stages/config.h"
#include "tools/stages/finetune.h"
#include "tools/stages/pipeline.h"
#include "tools/stages/evaluate.h"
#include "tools/pretrain/build.h"
#include "models/heads.h"

using namespace bissl;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool have_fashion_mnist() {
  return fs::exists(std::string(data::kFashionMnistDir) + "/train-images-idx3-ubyte.gz") ||
         fs::exists(std::string(data::kFashionMnistDir) + "/train-images-idx3-ubyte");
}

// True (after saying so) when the test cannot run here.
bool skip_without_fashion_mnist() {
  if (have_fashion_mnist()) return false;
  MESSAGE("SKIPPED: Fashion-MNIST is not installed at ", data::kFashionMnistDir, " (tools/setup.sh installs it)");
  return true;
}

// A shipped pipeline config in its --quick preset with `sets` after it,
// writing into `tmp`, on the CPU.
stages::Config quick_config(const std::string& file, const std::vector<std::string>& sets,
                            const testing::TempDir& tmp) {
  stages::Config c = stages::load_config(std::string(BISSL_SOURCE_DIR) + "/configs/" + file, sets, /*quick=*/true);
  c.out = tmp.file("run");
  c.device = "cpu";
  return c;
}

}  // namespace

TEST_SUITE("stages") {
  TEST_CASE("settings: TOML, overrides, lists, pass-through sections, round trip, errors") {
    struct V {
      std::string name = "a";
      double lr = 0.1;
      int64_t n = 3;
      bool on = false;
      std::vector<int64_t> ids;
      std::vector<std::string> words;
    } v;
    std::vector<std::string> passed;
    settings::Settings s;
    s.add("x", "name", &v.name);
    s.add("x", "lr", &v.lr);
    s.add("x", "n", &v.n);
    s.add("y", "on", &v.on);
    s.add("y", "ids", &v.ids);
    s.add("y", "words", &v.words);
    s.add_passthrough("sub", [&](const std::string& a) { passed.push_back(a); }, [] { return "[inner]\nk = 1\n"; });
    s.load_toml_string("[x]\nname = \"b\"\nlr = 1e-3\n[y]\non = true\nids = [0, 2, 4]\nwords = [\"p\", \"q\"]\n"
                       "[sub.train]\nepochs = 2\n",
                       "test");
    CHECK(v.name == "b");
    CHECK(v.lr == 1e-3);
    CHECK(v.on);
    CHECK(v.ids == std::vector<int64_t>{0, 2, 4});
    CHECK(v.words == std::vector<std::string>{"p", "q"});
    CHECK(passed == std::vector<std::string>{"train.epochs=2"});
    s.set("x.n=7");
    s.set("y.ids=1,3");
    s.set("sub.data.root=/tmp");
    CHECK(v.n == 7);
    CHECK(v.ids == std::vector<int64_t>{1, 3});
    CHECK(passed.back() == "data.root=/tmp");
    std::string text = s.to_toml();
    CHECK(text.find("[sub.inner]") != std::string::npos);
    V w = v;
    v = V{};
    s.load_toml_string(text.substr(0, text.find("[sub.inner]")), "round trip");
    CHECK(v.name == w.name);
    CHECK(v.lr == w.lr);
    CHECK(v.n == w.n);
    CHECK(v.ids == w.ids);
    CHECK(v.words == w.words);
    CHECK_THROWS_WITH_AS(s.set("x.nope=1"), doctest::Contains("unknown key 'x.nope'; known keys: x.name"), Error);
    CHECK_THROWS_WITH_AS(s.set("x.n=1.5"), doctest::Contains("x.n expects an integer, found '1.5'"), Error);
    CHECK_THROWS_WITH_AS(s.set("y.on=maybe"), doctest::Contains("y.on expects true or false"), Error);
    CHECK_THROWS_WITH_AS(s.load_toml_string("[x]\nlr = \"fast\"\n", "f.toml"),
                         doctest::Contains("x.lr expects a number, found 'fast'"), Error);
    CHECK_THROWS_WITH_AS(s.load_toml_string("[x\n", "broken.toml"), doctest::Contains("broken.toml"), Error);
  }

  TEST_CASE("the pipeline config: the shipped file loads, round-trips and validates") {
    stages::Config c = stages::load_config(std::string(BISSL_SOURCE_DIR) + "/configs/pipeline_fashion_mnist.toml", {});
    CHECK(c.task.classes == std::vector<int64_t>{0, 2, 4, 6});
    CHECK(c.pretrain.method == "simclr");
    CHECK(c.pretrain.width == 0.25);
    CHECK(c.bissl.lambda == 0.001);  // spec defaults where the file is silent
    CHECK(c.bissl.delta == 10.0);
    CHECK(c.bissl.cg_iterations == 5);
    stages::Config d;
    d.load_toml_string(c.to_toml(), "resolved");
    CHECK(d.to_toml() == c.to_toml());
    stages::Config copy = c;  // a copy is bound to its own members
    copy.set("finetune.seeds=7");
    CHECK(copy.finetune.seeds == 7);
    CHECK(c.finetune.seeds == 5);
    // Lists on the command line: "a,b" or as --print-config shows them, "[a, b]".
    copy.set("task.classes=[1, 3]");
    CHECK(copy.task.classes == std::vector<int64_t>{1, 3});
    copy.set("task.classes=[]");
    CHECK(copy.task.classes.empty());
    copy.set("pipeline.arms=[ft, bissl]");
    CHECK(copy.arms == std::vector<std::string>{"ft", "bissl"});
    CHECK_THROWS_WITH_AS(stages::load_config("", {"pipeline.arms=ft,bisl"}), doctest::Contains("unknown arm 'bisl'"),
                         Error);
    CHECK_THROWS_WITH_AS(stages::load_config("/nonexistent.toml", {}), doctest::Contains("expected a readable TOML file"),
                         Error);
    CHECK_THROWS_WITH_AS(stages::load_config("", {"pretrain.train.optimizer=adam"}),
                         doctest::Contains("train.optimizer must be lars, adamw or sgd"), Error);
    // Replayed H·v cannot redraw θP's stochastic depth.
    const std::vector<std::string> vit = {"pretrain.model.arch=vit_tiny", "pretrain.method.name=mae",
                                          "pretrain.model.drop_path=0.1"};
    auto with = [&](const std::string& extra) {
      std::vector<std::string> v = vit;
      v.push_back(extra);
      return v;
    };
    CHECK_THROWS_WITH_AS(stages::load_config("", with("bissl.cg_linearize=true")),
                         doctest::Contains("would be frozen at one draw"), Error);
    CHECK_NOTHROW(stages::load_config("", with("bissl.cg_linearize=false")));
  }

  TEST_CASE("a torchvision-style checkpoint (with its classifier) loads as a stage backbone") {
    testing::TempDir tmp("torchvision");
    stages::Config c = stages::load_config(std::string(BISSL_SOURCE_DIR) + "/configs/pipeline_fashion_mnist.toml", {});
    // A ResNet-18 at the config's width with a 1000-way fc, saved in PyTorch layout.
    models::ResNetConfig rc;
    rc.width = c.pretrain.width;
    rc.in_channels = 1;
    rc.num_classes = 1000;
    Generator g(4);
    models::ResNet with_fc(rc, g);
    models::save_torch_state(with_fc, tmp.file("tv.safetensors"));
    int64_t fdim = 0;
    auto bb = stages::build_backbone(c, 1, tmp.file("tv.safetensors"), 0, fdim);
    CHECK(fdim == with_fc.feature_dim());
    auto want = with_fc.named_parameters();
    auto got = bb->named_parameters();
    REQUIRE(got.size() + 2 == want.size());  // all but fc.weight, fc.bias
    for (size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].first == want[i].first);
      CHECK(got[i].second.to_vector() == want[i].second.to_vector());
    }
    // A checkpoint of another width: one line naming the file and the tensor.
    rc.width = 0.5;
    models::ResNet wider(rc, g);
    models::save_torch_state(wider, tmp.file("wide.safetensors"));
    CHECK_THROWS_WITH_AS(stages::build_backbone(c, 1, tmp.file("wide.safetensors"), 0, fdim),
                         doctest::Contains("wide.safetensors"), Error);
  }

  TEST_CASE("MAE through every stage: a 2-block ViT-Tiny, AdamW fine-tuning with layer-wise lr decay and drop path") {
    if (skip_without_fashion_mnist()) return;
    testing::TempDir tmp("mae");
    stages::Config c = quick_config(
        "pipeline_fashion_mnist.toml",
        {"pretrain.model.arch=vit_tiny", "pretrain.model.patch_size=7", "pretrain.model.depth=2",
         "pretrain.method.name=mae", "pretrain.train.optimizer=adamw", "pretrain.train.lr=1.5e-3",
         "pretrain.train.weight_decay=0.05", "pretrain.data.limit=1024", "pipeline.arms=ft,bissl",
         "finetune.optimizer=adamw", "finetune.layer_decay=0.75", "finetune.drop_path=0.1", "finetune.lr=1e-3",
         "finetune.search_trials=0", "finetune.epochs=2", "bissl.alternations=1", "eval.tsne_points=60"},
        tmp);
    CHECK(c.pretrain.limit == 1024);  // the --set overrides come after the preset
    std::string report = stages::run_pipeline(c);
    CHECK(report.find("| bissl |") != std::string::npos);
    auto m = nlohmann::json::parse(slurp(c.out + "/train/bissl/metrics.jsonl"));
    CHECK(m["hvps"] == 2 * 5);
    CHECK(std::isfinite(m["cg_residual_last"].get<double>()));
    CHECK(fs::exists(c.out + "/finetune/bissl/seed1/backbone.safetensors"));
  }

  TEST_CASE("BYOL through every stage: the EMA target is saved, loaded by the BiSSL stage and kept out of its HVPs") {
    if (skip_without_fashion_mnist()) return;
    testing::TempDir tmp("byol");
    stages::Config c = quick_config(
        "pipeline_fashion_mnist.toml",
        {"pretrain.method.name=byol", "pretrain.method.ema=0.99", "pretrain.train.lr=1.0", "pretrain.data.limit=1024",
         "pipeline.arms=ft,bissl", "finetune.search_trials=0", "finetune.lr=0.05", "finetune.epochs=2",
         "finetune.seeds=2", "bissl.alternations=2", "eval.tsne_points=0"},
        tmp);
    std::string report = stages::run_pipeline(c);
    CHECK(report.find("| bissl |") != std::string::npos);
    CHECK(report.find("byol") != std::string::npos);
    std::ifstream m(c.out + "/train/bissl/metrics.jsonl");
    int lines = 0;
    for (std::string line; std::getline(m, line); ++lines) {
      auto j = nlohmann::json::parse(line);
      CHECK(j["hvps"] == 2 * 5);
      CHECK(std::isfinite(j["lower_loss"].get<double>()));
      CHECK(std::isfinite(j["cg_residual_last"].get<double>()));
    }
    CHECK(lines == 2);
    // The stage's objective file holds BYOL's target network next to the heads.
    auto obj = slurp(c.out + "/train/bissl/objective.safetensors");
    CHECK(obj.find("target") != std::string::npos);
    CHECK(fs::exists(c.out + "/finetune/bissl/seed1/result.json"));
  }

  TEST_CASE("a multi-label task (Fashion-MNIST mosaics) through every stage: mAP, soft-target cross-entropy") {
    if (skip_without_fashion_mnist()) return;
    testing::TempDir tmp("mosaic");
    stages::Config c = quick_config(
        "pipeline_fashion_mnist_mosaic.toml",
        {"pipeline.pretrained=", "pretrain.data.limit=1024", "pipeline.arms=ft,bissl,ij_discarded",
         "bissl.alternations=1", "finetune.epochs=2", "eval.tsne_points=60"},
        tmp);
    CHECK(c.task.train_images == 200);  // the preset's mosaic counts
    stages::Task task = stages::load_task(c.task);
    CHECK(task.multi_label);
    CHECK(task.num_classes == 10);
    CHECK(task.train->n == 200);
    CHECK(task.val->n == 100);
    CHECK(task.test->n == 300);
    CHECK(task.train->h == 56);
    CHECK(task.describe().find("multi-label") != std::string::npos);

    std::string report = stages::run_pipeline(c);
    CHECK(report.find("| ft |") != std::string::npos);
    CHECK(report.find("| bissl |") != std::string::npos);
    CHECK(report.find("test mAP (%)") != std::string::npos);
    CHECK(report.find("top-1") == std::string::npos);
    auto eval = nlohmann::json::parse(slurp(c.out + "/eval/eval.json"));
    CHECK(eval["metric"] == "map");
    REQUIRE(eval["arms"]["bissl"]["test_map"].size() == 2);
    for (auto& v : eval["arms"]["bissl"]["test_map"]) {
      CHECK(v.get<double>() > 0);
      CHECK(v.get<double>() <= 1);
    }
    CHECK_FALSE(eval["arms"]["ft"].contains("test_top1"));
    auto m = nlohmann::json::parse(slurp(c.out + "/train/bissl/metrics.jsonl"));
    CHECK(m["hvps"] == 2 * 5);
    CHECK(m.contains("val_map_d"));
    CHECK(std::isfinite(m["upper_loss_d"].get<double>()));
    auto w = nlohmann::json::parse(slurp(c.out + "/warmup/summary.json"));
    CHECK(w["metric"] == "map");
    CHECK(w.contains("final_val_map"));

    // The saved seed-0 model scores the test mosaics as result.json says, and
    // its mAP with the reference's rule equals the devkit's (no difficult labels here).
    auto r = nlohmann::json::parse(slurp(c.out + "/finetune/ft/seed0/result.json"));
    int64_t fdim = 0;
    auto backbone = stages::build_backbone(c, 1, c.out + "/finetune/ft/seed0/backbone.safetensors", 0, fdim);
    Generator g(0);
    models::LinearHead head(fdim, 10, g);
    pretrain::load_module(head, c.out + "/finetune/ft/seed0/head.safetensors", "head");
    auto acc = stages::evaluate(*backbone, head, *task.test, 10, c.task.image_size, Device::CPU, 1);
    CHECK(acc.multi_label);
    CHECK(acc.map == doctest::Approx(r["test"]["map"].get<double>()).epsilon(1e-12));
    CHECK(stages::evaluate(*backbone, head, *task.test, 10, c.task.image_size, Device::CPU, 1, true).map == acc.map);

    // A second run reuses every output.
    std::string again = stages::run_pipeline(c);
    auto table = [](const std::string& t) { return t.substr(t.find("| arm |"), t.find("Per-seed") - t.find("| arm |")); };
    CHECK(table(again) == table(report));

    // Results of another metric are not taken for this task's.
    stages::ArmResult ft = stages::arm_from_json(nlohmann::json::parse(slurp(c.out + "/finetune/ft/result.json")));
    CHECK(ft.multi_label);
    ft.multi_label = false;
    CHECK_THROWS_WITH_AS(stages::run_eval(c, task, {ft}, {}, c.out + "/finetune", tmp.file("eval2")),
                         doctest::Contains("mAP"), Error);
  }

  TEST_CASE("a VOC2007 task: the reader under load_task, a train subset, fine-tuning scored by mAP") {
    // A small VOCdevkit written here: PPM bytes under .jpg names (stb_image
    // reads by content), objects of a few classes, some marked difficult.
    testing::TempDir tmp("voc_task");
    const std::string dir = tmp.file("VOCdevkit/VOC2007");
    for (const char* sub : {"/ImageSets/Main", "/Annotations", "/JPEGImages"}) fs::create_directories(dir + sub);
    const char* names[] = {"cat", "dog", "person", "car"};
    auto write_set = [&](const std::string& set, int first, int count) {
      std::ofstream list(dir + "/ImageSets/Main/" + set + ".txt");
      for (int i = first; i < first + count; ++i) {
        char id[16];
        std::snprintf(id, sizeof id, "%06d", i);
        list << id << "\n";
        const int w = 20 + i % 5, h = 18 + i % 3;
        std::ofstream img(dir + "/JPEGImages/" + id + ".jpg", std::ios::binary);
        img << "P6\n" << w << " " << h << "\n255\n";
        for (int k = 0; k < w * h * 3; ++k) img.put(char((k * 7 + i * 40) % 256));
        std::ofstream ann(dir + "/Annotations/" + id + ".xml");
        ann << "<annotation><filename>" << id << ".jpg</filename>";
        for (int o = 0; o <= i % 2; ++o)
          ann << "<object><name>" << names[(i + 2 * o) % 4] << "</name><difficult>" << (i % 7 == 0 ? 1 : 0)
              << "</difficult></object>";
        ann << "</annotation>";
      }
    };
    write_set("train", 1, 24);
    write_set("val", 101, 8);
    write_set("test", 201, 8);
    stages::Config c = stages::load_config(std::string(BISSL_SOURCE_DIR) + "/configs/pipeline_fashion_mnist.toml",
                                           {"task.dataset=voc2007", "task.root=" + tmp.dir.string(), "task.classes=[]",
                                            "task.image_size=16", "task.train_images=16", "finetune.batch_size=8",
                                            "finetune.epochs=2", "pipeline.device=cpu", "pipeline.workers=1"});
    stages::Task task = stages::load_task(c.task);
    CHECK(task.multi_label);
    CHECK(task.num_classes == 20);
    CHECK(task.train->n == 16);
    CHECK(task.val->n == 8);
    CHECK(task.test->n == 8);
    CHECK(task.train->h == 18);  // load_size: round(16 / 0.875)
    CHECK(task.train->c == 3);
    CHECK(task.train_index.size() == 16);
    // Fine-tuning a random backbone (the random_init arm: no pretraining on RGB here).
    auto spec = stages::spec_for_arm(c, "random_init", "");
    stages::FinetuneRun r = stages::finetune_once(c, task, spec, 0.01, 1e-4, 0, 2, true, "", false, "voc test");
    CHECK(r.multi_label);
    CHECK(r.tested);
    CHECK(r.test.multi_label);
    CHECK(r.test.map > 0);
    CHECK(r.test.map <= 1);
    CHECK(r.val_score.size() == 2);
    auto j = stages::to_json(r);
    CHECK(j["metric"] == "map");
    CHECK(j.contains("best_val_map"));
    CHECK(stages::run_from_json(j).test.map == r.test.map);
  }

  TEST_CASE("the --quick pipeline on Fashion-MNIST end to end, rerun, and an exact BiSSL resume") {
    if (skip_without_fashion_mnist()) return;
    testing::TempDir tmp("pipeline");
    stages::Config c = quick_config("pipeline_fashion_mnist.toml", {}, tmp);
    std::string report = stages::run_pipeline(c);
    for (const char* f : {"report.md", "config.toml", "pretrain/backbone.safetensors", "task/train.txt",
                          "finetune/search/search.jsonl", "warmup/head.safetensors", "train/bissl/backbone.safetensors",
                          "train/bissl/metrics.jsonl", "finetune/ft/seed1/result.json",
                          "finetune/bissl/seed0/backbone.safetensors", "eval/eval.json", "eval/tsne_bissl_start.svg",
                          "train_bissl_losses.svg", "finetune_val.svg"})
      CHECK_MESSAGE(fs::exists(c.out + "/" + f), "missing ", f);
    CHECK(report.find("| ft |") != std::string::npos);
    CHECK(report.find("| bissl |") != std::string::npos);
    CHECK(report.find("p (two-sided)") != std::string::npos);
    auto eval = nlohmann::json::parse(slurp(c.out + "/eval/eval.json"));
    CHECK(eval["arms"]["bissl"]["vs_ft"]["assignments"] == 6);  // C(4, 2) for 2 + 2 seeds
    CHECK(eval["arms"]["ft"]["test_top1"].size() == 2);
    // BiSSL's metrics: one line per alternation with CG residuals and the distance.
    std::ifstream m(c.out + "/train/bissl/metrics.jsonl");
    int lines = 0;
    for (std::string line; std::getline(m, line); ++lines) {
      auto j = nlohmann::json::parse(line);
      CHECK(j["hvps"] == 2 * 5);
      CHECK(j["cg_residual_first"].get<double>() > 0);  // ‖∇θP L_D‖
      CHECK(std::isfinite(j["cg_residual_last"].get<double>()));
      CHECK(j["cg_max_curvature"].get<double>() >= j["cg_min_curvature"].get<double>());
      CHECK(j.contains("val_top1_d"));
    }
    CHECK(lines == 2);

    // A second run finds every output and recomputes only the statistics.
    std::string again = stages::run_pipeline(c);
    auto table = [](const std::string& r) { return r.substr(r.find("| arm |"), r.find("Per-seed") - r.find("| arm |")); };
    CHECK(table(again) == table(report));
    CHECK(again.find("(an earlier invocation; outputs reused)") != std::string::npos);

    // An interrupted search (one trial of two on disk) resumes to the same choice.
    {
      const std::string sdir = c.out + "/finetune/search";
      auto chosen = nlohmann::json::parse(slurp(sdir + "/hyper.json"));
      std::string first = slurp(sdir + "/search.jsonl");
      first = first.substr(0, first.find('\n') + 1);
      std::ofstream(sdir + "/search.jsonl", std::ios::trunc) << first << "{\"trial\": 1, \"lr\": ";  // cut short
      stages::Config cs = c;
      stages::Task task = stages::load_task(cs.task);
      stages::Hyper h = stages::random_search(cs, task, stages::spec_for_arm(cs, "ft", c.out + "/pretrain/backbone.safetensors"),
                                              sdir);
      CHECK(h.lr == chosen["lr"].get<double>());
      CHECK(h.weight_decay == chosen["weight_decay"].get<double>());
      CHECK(slurp(sdir + "/search.jsonl").rfind(first, 0) == 0);
    }

    // Every other arm, added to the same run: FT and BiSSL are found, the rest run.
    stages::Config all = c;
    all.arms = stages::known_arms();
    all.finetune.epochs = 2;
    std::string full = stages::run_pipeline(all);
    for (auto& arm : stages::known_arms()) {
      CAPTURE(arm);
      CHECK(full.find("| " + arm + " |") != std::string::npos);
    }
    for (const char* f : {"train/ij_discarded/backbone.safetensors", "train/weighted_sum/backbone.safetensors",
                          "train/mix/backbone.safetensors", "finetune/linear_probe/seed1/result.json",
                          "finetune/random_init/result.json", "finetune/noisytune/result.json",
                          "finetune/zero_head/result.json"})
      CHECK_MESSAGE(fs::exists(c.out + "/" + f), "missing ", f);
    {
      std::ifstream ij(c.out + "/train/ij_discarded/metrics.jsonl");
      std::string line;
      REQUIRE(std::getline(ij, line));
      CHECK(nlohmann::json::parse(line)["hvps"] == 0);
    }

    // The BiSSL stage stopped after one alternation and resumed equals a straight run.
    stages::Task task = stages::load_task(c.task);
    stages::Config c2 = c;
    c2.finetune.lr = 0.05, c2.finetune.weight_decay = 1e-3;
    stages::BisslInputs in{c.out + "/pretrain/backbone.safetensors", c.out + "/pretrain/objective.safetensors",
                           c.out + "/warmup/head.safetensors"};
    stages::run_bissl(c2, task, in, tmp.file("straight"), "bissl", false, false);
    stages::run_bissl(c2, task, in, tmp.file("resumed"), "bissl", false, true, /*stop_after=*/1);
    CHECK_FALSE(fs::exists(tmp.file("resumed") + "/backbone.safetensors"));
    auto r = stages::run_bissl(c2, task, in, tmp.file("resumed"), "bissl", false, true);
    CHECK(r.resumed);
    CHECK(r.stats.size() == 1);
    CHECK(slurp(tmp.file("straight") + "/backbone.safetensors") == slurp(tmp.file("resumed") + "/backbone.safetensors"));
    CHECK(slurp(tmp.file("straight") + "/head_d.safetensors") == slurp(tmp.file("resumed") + "/head_d.safetensors"));

    // Missing inputs name the file.
    stages::BisslInputs bad = in;
    bad.objective = tmp.file("nope.safetensors");
    CHECK_THROWS_WITH_AS(stages::run_bissl(c2, task, bad, tmp.file("bad"), "bissl", false, false),
                         doctest::Contains("nope.safetensors"), Error);
  }
}
