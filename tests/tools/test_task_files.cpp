// Downstream tasks on your own images (task.dataset = folder | list,
// tools/stages/task.cpp): the split rules (a validation folder or list of
// its own, else a class-stratified fraction of train), class subsets and
// k per class, sizes and channels, the one-line errors; and one task through
// two readers: Fashion-MNIST's four upper-body classes written as a PNG
// folder give bitwise the IDX reader's training, validation and test images,
// and the same --quick pipeline results.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include <stb/stb_image_write.h>  // implemented in data/stb_write.cpp

#include "data/datasets.h"
#include "tests/support.h"
#include "tools/stages/config.h"
#include "tools/stages/pipeline.h"
#include "tools/stages/task.h"

using namespace bissl;
namespace fs = std::filesystem;
using bissl::testing::expect_error;
using bissl::testing::TempDir;

namespace {

void png(const fs::path& p, int w, int h, int c, const uint8_t* px) {
  fs::create_directories(p.parent_path());
  REQUIRE(stbi_write_png(p.string().c_str(), w, h, c, px, w * c) != 0);
}

void flat_png(const fs::path& p, int w, int h, int c, int value) {
  std::vector<uint8_t> px(size_t(w * h * c), uint8_t(value));
  png(p, w, h, c, px.data());
}

void text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << s;
}

// A folder task: `per_class` images per class in train, 2 in test, flat
// images whose value encodes class and index (10·class + i).
void write_folder(const fs::path& root, const std::vector<std::string>& classes, int per_class, bool grey = false) {
  for (size_t c = 0; c < classes.size(); ++c)
    for (int i = 0; i < per_class; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "%03d.png", i);
      flat_png(root / "train" / classes[c] / name, 6, 5, grey ? 1 : 3, int(10 * c + size_t(i)));
      if (i < 2) flat_png(root / "test" / classes[c] / name, 6, 5, grey ? 1 : 3, int(100 + 10 * c + size_t(i)));
    }
}

stages::TaskConfig folder_config(const fs::path& root) {
  stages::TaskConfig t;
  t.dataset = "folder";
  t.root = root.string();
  t.image_size = 4;
  return t;
}

std::vector<int64_t> labels_of(const data::ImageSet& s) { return s.labels; }

bool same_images(const data::ImageSet& a, const data::ImageSet& b) {
  return a.n == b.n && a.h == b.h && a.w == b.w && a.c == b.c && a.pixels == b.pixels && a.labels == b.labels;
}

bool have_fashion_mnist() {
  if (fs::exists(std::string(data::kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) return true;
  MESSAGE("SKIPPED: " << data::kFashionMnistDir << " not found (apt install dataset-fashion-mnist)");
  return false;
}

// Fashion-MNIST's upper-body classes (0 T-shirt/top, 2 Pullover, 4 Coat,
// 6 Shirt) as root/{train,test}/<k>_<name>/<file index>.png: the folder
// order "name" then is the IDX files' order.
void write_upper_body(const fs::path& root) {
  const std::map<int64_t, std::string> folder = {{0, "0_T-shirt-top"}, {2, "1_Pullover"}, {4, "2_Coat"}, {6, "3_Shirt"}};
  for (bool train : {true, false}) {
    data::ImageSet s = data::load_fashion_mnist(data::kFashionMnistDir, train);
    for (int64_t i = 0; i < s.n; ++i) {
      auto it = folder.find(s.labels[size_t(i)]);
      if (it == folder.end()) continue;
      char name[32];
      std::snprintf(name, sizeof name, "%05lld.png", (long long)i);
      png(root / (train ? "train" : "test") / it->second / name, int(s.w), int(s.h), 1, s.image(i));
    }
  }
}

}  // namespace

TEST_SUITE("parallel: own_images") {
  TEST_CASE("folder task: classes as torchvision's, a stratified validation split, or a val folder of its own") {
    TempDir tmp("task_folder");
    const fs::path root = tmp.dir / "data";
    write_folder(root, {"bee", "ant", "cat"}, 10);
    stages::TaskConfig t = folder_config(root);
    stages::Task task = stages::load_task(t);
    CHECK(task.class_names == std::vector<std::string>{"ant", "bee", "cat"});
    CHECK(task.num_classes == 3);
    CHECK(task.train->n == 24);  // 20 % of each class's 10 held out
    CHECK(task.val->n == 6);
    CHECK(task.test->n == 6);
    CHECK(task.train->c == 3);
    CHECK(task.train->h == 5);
    CHECK(task.train->w == 6);
    for (int64_t c : data::class_counts(*task.val)) CHECK(c == 2);
    // Test labels are the training folder's indices: test/cat holds 100 + 10·2 + i.
    CHECK(int(task.test->image(4)[0]) == 100 + 10 * 2 + 0);
    CHECK(task.test->labels[4] == 2);

    SUBCASE("class subset and k per class, as for Fashion-MNIST") {
      t.classes = {2, 0};  // cat, ant -> 0, 1
      t.train_per_class = 3;
      stages::Task s = stages::load_task(t);
      CHECK(s.class_names == std::vector<std::string>{"cat", "ant"});
      CHECK(s.train->n == 6);
      CHECK(s.test->n == 4);
      // The test images keep their order (ant's before cat's), relabelled: ant/000.png is class 1 now.
      CHECK(int(s.test->image(0)[0]) == 100 + 10 * 1 + 0);
      CHECK(s.test->labels == std::vector<int64_t>{1, 1, 0, 0});
    }
    SUBCASE("a val folder replaces the drawn split; its classes are the training folder's") {
      write_folder(tmp.dir / "v", {"ant", "cat"}, 1);
      fs::rename(tmp.dir / "v" / "train", root / "val");
      stages::Task s = stages::load_task(t);
      CHECK(s.train->n == 30);
      CHECK(s.val->n == 2);
      CHECK(s.val->labels == std::vector<int64_t>{0, 2});
      TempDir out("task_folder_splits");
      stages::save_task_splits(s, t, out.dir.string());
      std::ifstream va(out.file("val.txt"));
      std::stringstream head;
      head << va.rdbuf();
      CHECK(head.str().find("images of val/ of the validation split") != std::string::npos);
    }
    SUBCASE("errors: a test class absent from train, an empty class folder, no test folder") {
      flat_png(root / "test" / "dog" / "0.png", 6, 5, 3, 1);
      expect_error([&] { stages::load_task(t); }, {"dog", "is not among the training classes"});
      fs::remove_all(root / "test" / "dog");
      fs::create_directories(root / "train" / "eel");
      expect_error([&] { stages::load_task(t); }, {"eel", "at least one image"});
      fs::remove_all(root / "train" / "eel");
      fs::remove_all(root / "test");
      expect_error([&] { stages::load_task(t); }, {"train/<class>", "no test folder"});
    }
    SUBCASE("task.max_image_pixels: an image above it refused from its header, naming the setting") {
      t.max_image_pixels = 29;  // 6x5 = 30 pixels
      expect_error([&] { stages::load_task(t); }, {"declares 6x5 = 30 pixels", "limit of 29", "max_image_pixels"});
      t.max_image_pixels = 30;
      CHECK(stages::load_task(t).train->n == 24);
    }
    SUBCASE("any image size: the shorter side to load_size, the centre square") {
      flat_png(root / "train" / "ant" / "big.png", 40, 20, 3, 7);
      expect_error([&] { stages::load_task(t); }, {"big.png", "expected an image of 5x6", "found 20x40"});
      t.load_size = 8;
      stages::Task s = stages::load_task(t);
      CHECK(s.train->h == 8);
      CHECK(s.test->w == 8);
    }
  }

  TEST_CASE("folder task: grey images give a 1-channel task; channels = 3 makes them RGB") {
    TempDir tmp("task_grey");
    write_folder(tmp.dir, {"a", "b"}, 5, /*grey=*/true);
    stages::TaskConfig t = folder_config(tmp.dir);
    CHECK(stages::load_task(t).train->c == 1);
    t.channels = 3;
    CHECK(stages::load_task(t).train->c == 3);
  }

  TEST_CASE("list task: split files and a class-names file; an image in two splits is an error") {
    TempDir tmp("task_list");
    const fs::path root = tmp.dir;
    std::string train, test;
    for (int c = 0; c < 2; ++c)
      for (int i = 0; i < 5; ++i) {
        const std::string f = "images/" + std::to_string(c) + "_" + std::to_string(i) + ".png";
        flat_png(root / f, 4, 4, 3, 10 * c + i);
        (i < 4 ? train : test) += f + " " + (c ? "dog" : "cat") + "\n";
      }
    text(root / "train.txt", train);
    text(root / "test.txt", test);
    text(root / "names.txt", "cat\ndog\n");
    stages::TaskConfig t;
    t.dataset = "list";
    t.root = root.string();
    t.image_size = 4;
    t.class_names_file = "names.txt";
    t.val_per_class = 1;
    stages::Task task = stages::load_task(t);
    CHECK(task.class_names == std::vector<std::string>{"cat", "dog"});
    CHECK(task.train->n == 6);
    CHECK(task.val->n == 2);
    CHECK(task.test->n == 2);
    CHECK(labels_of(*task.test) == std::vector<int64_t>{0, 1});

    text(root / "val.txt", "images/0_4.png 0\n");
    t.val_list = "val.txt";
    expect_error([&] { stages::load_task(t); }, {"'images/0_4.png' is in both the validation and the test split"});
    text(root / "val.txt", "images/1_0.png 1\n");
    expect_error([&] { stages::load_task(t); }, {"'images/1_0.png' is in both the train and the validation split"});
  }

  TEST_CASE("stl10 downstream: its labelled train and test files, class names, subsets and the validation rule") {
    TempDir tmp("task_stl10");
    // STL-10's binary format: 96x96x3 images stored channel after channel, each column-major; labels 1..10.
    auto write = [&](const std::string& split, int per_class) {
      std::ofstream x(tmp.file(split + "_X.bin"), std::ios::binary), y(tmp.file(split + "_y.bin"), std::ios::binary);
      std::vector<char> img(96 * 96 * 3);
      for (int i = 0; i < per_class; ++i)
        for (int c = 1; c <= 10; ++c) {
          std::fill(img.begin(), img.end(), char(10 * c + i));
          x.write(img.data(), std::streamsize(img.size()));
          y.put(char(c));
        }
    };
    write("train", 5);
    write("test", 2);
    stages::TaskConfig t;
    t.dataset = "stl10";
    t.root = tmp.dir.string();
    t.image_size = 96;
    t.classes = {7, 1};  // monkey, bird
    stages::Task task = stages::load_task(t);
    CHECK(task.class_names == std::vector<std::string>{"monkey", "bird"});
    CHECK(task.train->n == 8);  // 20 % of each class's 5 held out
    CHECK(task.val->n == 2);
    CHECK(task.test->n == 4);
    CHECK(task.test->h == 96);
    CHECK(task.test->c == 3);
    CHECK(task.test->labels == std::vector<int64_t>{1, 0, 1, 0});  // file order: bird (label 2), monkey (label 8)
    CHECK(int(task.test->image(1)[0]) == 10 * 8 + 0);
  }

  TEST_CASE("one task through two readers: Fashion-MNIST's upper-body classes as PNG files equal the IDX reader's") {
    if (!have_fashion_mnist()) return;
    TempDir tmp("task_two_readers");
    write_upper_body(tmp.dir);
    stages::TaskConfig idx;
    idx.classes = {0, 2, 4, 6};
    idx.train_per_class = 200;
    idx.val_per_class = 100;
    stages::TaskConfig folder = idx;
    folder.dataset = "folder";
    folder.root = tmp.dir.string();
    folder.classes.clear();
    folder.folder_order = "name";
    stages::Task a = stages::load_task(idx), b = stages::load_task(folder);
    CHECK(same_images(*a.train, *b.train));
    CHECK(same_images(*a.val, *b.val));
    CHECK(same_images(*a.test, *b.test));
    CHECK(b.train->c == 1);
    CHECK(b.class_names == std::vector<std::string>{"0_T-shirt-top", "1_Pullover", "2_Coat", "3_Shirt"});
    // Lazy: the same images, decoded when read.
    stages::TaskConfig lazy = folder;
    lazy.lazy = true;
    stages::Task l = stages::load_task(lazy);
    for (auto [x, y] : {std::pair{a.train, l.train}, std::pair{a.val, l.val}, std::pair{a.test, l.test}}) {
      REQUIRE(y->is_lazy());
      std::vector<uint8_t> px(size_t(y->n * y->image_bytes()));
      for (int64_t i = 0; i < y->n; ++i) y->read(i, px.data() + i * y->image_bytes());
      CHECK(px == x->pixels);
      CHECK(y->labels == x->labels);
    }
    // The class-major order (torchvision's) holds the same images in another order.
    folder.folder_order = "class";
    stages::Task c = stages::load_task(folder);
    CHECK(c.test->pixels != a.test->pixels);
    CHECK(data::class_counts(*c.test) == data::class_counts(*a.test));
  }
}

TEST_SUITE("parallel: two_readers") {
  TEST_CASE("one task through two readers: the --quick pipeline on the PNG folder gives the IDX reader's results, "
            "decoded into memory or lazily") {
    if (!have_fashion_mnist()) return;
    TempDir tmp("pipeline_two_readers");
    write_upper_body(tmp.dir / "png");
    auto run = [&](const std::string& out, const std::vector<std::string>& sets) {
      stages::Config c = stages::load_config(std::string(BISSL_SOURCE_DIR) + "/configs/pipeline_fashion_mnist.toml",
                                             sets, /*quick=*/true);
      c.out = tmp.file(out);
      c.device = "cpu";
      stages::run_pipeline(c);
      return c.out;
    };
    const std::string a = run("idx", {});
    // The folder run borrows the IDX run's pretraining (its stamp reads no [task] key): every later unit is
    // computed again from the folder's images.
    fs::create_directories(tmp.dir / "folder");
    fs::copy(a + "/pretrain", tmp.file("folder/pretrain"), fs::copy_options::recursive);
    const std::vector<std::string> as_folder = {"task.dataset=folder", "task.root=" + tmp.file("png"),
                                                "task.classes=[]", "task.folder_order=name"};
    const std::string b = run("folder", as_folder);
    // And decoded lazily from the files, with a cache that holds part of them.
    fs::create_directories(tmp.dir / "lazy");
    fs::copy(a + "/pretrain", tmp.file("lazy/pretrain"), fs::copy_options::recursive);
    std::vector<std::string> as_lazy = as_folder;
    as_lazy.push_back("task.lazy=true");
    as_lazy.push_back("task.cache_mb=1");
    const std::string l = run("lazy", as_lazy);
    auto json = [](const std::string& path) {
      std::ifstream f(path);
      REQUIRE(f.good());
      std::stringstream ss;
      ss << f.rdbuf();
      return nlohmann::json::parse(ss.str());
    };
    const nlohmann::json ea = json(a + "/eval/eval.json"), eb = json(b + "/eval/eval.json"),
                         el = json(l + "/eval/eval.json");
    for (const char* k : {"arms", "comparisons", "alignment", "metric"}) {
      CAPTURE(k);
      CHECK(ea[k] == eb[k]);
      CHECK(ea[k] == el[k]);
    }
    CHECK(ea["arms"]["bissl"]["test_top1"].size() == 2);
    // Every fine-tuning run's result, and BiSSL's metrics apart from their wall times.
    for (const char* arm : {"ft", "bissl", "ij_discarded"})
      for (const char* seed : {"seed0", "seed1"}) {
        nlohmann::json ra = json(a + "/finetune/" + arm + "/" + seed + "/result.json");
        nlohmann::json rb = json(b + "/finetune/" + arm + "/" + seed + "/result.json");
        nlohmann::json rl = json(l + "/finetune/" + arm + "/" + seed + "/result.json");
        for (auto* r : {&ra, &rb, &rl}) r->erase("seconds");
        CAPTURE(arm);
        CHECK(ra == rb);
        CHECK(ra == rl);
      }
  }
}
