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
#include <random>
#include <set>
#include <map>
#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>

#include "engine/nn/state_io.h"
#include "models/factory.h"
#include "data/datasets.h"
#include "data/file_io.h"
#include "models/resnet.h"
#include "models/torch_state.h"
#include "tools/stages/classify.h"
#include "tests/support.h"
#include "engine/schema.h"
#include "engine/io/safetensors.h"
#include "tools/common/files.h"
#include "tools/common/settings.h"
#include "tools/common/version.h"
#include "tools/stages/bissl_stage.h"
#include "tools/stages/config.h"
#include "tools/stages/finetune.h"
#include "tools/stages/pipeline.h"
#include "tools/stages/task.h"
#include "tools/stages/evaluate.h"
#include "tools/pretrain/build.h"
#include "models/heads.h"

using namespace bissl;
namespace fs = std::filesystem;

namespace {

struct SettingsV {  // the settings test's option struct
  std::string name = "a";
  double lr = 0.1;
  int64_t n = 3;
  bool on = false;
  std::vector<int64_t> ids;
  std::vector<std::string> words;
  template <class Vis>
  void fields(Vis& f) {
    f("name", name, schema::one_of({"a", "b"}), "a name");
    f("lr", lr, schema::gt(0), "a rate");
    f("n", n, schema::in(1, 10), "a count");
  }
};

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

// A 2-class task of 2x2 grey images, every pixel `value`.
stages::Task tiny_task(uint8_t value) {
  auto set = [value](int64_t n) {
    data::ImageSet s;
    s.n = n, s.h = s.w = 2, s.c = 1, s.num_classes = 2;
    s.pixels.assign(size_t(n * 4), value);
    for (int64_t i = 0; i < n; ++i) s.labels.push_back(i % 2);
    return std::make_shared<const data::ImageSet>(std::move(s));
  };
  stages::Task t;
  t.train = set(4), t.val = set(2), t.test = set(2);
  t.num_classes = 2;
  return t;
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

// Every stamped unit of a pipeline run -> an identity of its stamp.json
// (inode and modification time: a recomputed unit writes a new file).
std::map<std::string, std::string> unit_stamps(const std::string& out) {
  std::map<std::string, std::string> r;
  for (auto& e : fs::recursive_directory_iterator(out)) {
    if (e.path().filename() != "stamp.json") continue;
    struct stat st {};
    REQUIRE(::stat(e.path().c_str(), &st) == 0);
    r[fs::relative(e.path().parent_path(), out).string()] =
        std::to_string(st.st_ino) + "/" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  }
  return r;
}

// The units whose stamp changed from `before` to `after`.
std::set<std::string> rerun(const std::map<std::string, std::string>& before, const std::map<std::string, std::string>& after) {
  std::set<std::string> r;
  for (auto& [k, v] : after)
    if (!before.count(k) || before.at(k) != v) r.insert(k);
  return r;
}

// The report's "time" cell of a stage row.
std::string stage_cell(const std::string& report, const std::string& stage) {
  auto at = report.find("| " + stage + " | ");
  if (at == std::string::npos) return "";
  auto end = report.find('\n', at);
  std::string row = report.substr(at, end - at);
  auto last = row.rfind(" | ", row.size() - 3);
  return row.substr(last + 3, row.size() - last - 5);
}

}  // namespace

TEST_SUITE("stages") {
  TEST_CASE("settings: structs described once, TOML, overrides, lists, ranges, round trip, errors") {
    SettingsV v;
    settings::Settings s;
    s.section("x", v);
    s.section("y", [&](auto& f) {
      f("on", v.on, schema::any(), "a switch");
      f("ids", v.ids, schema::ge(0), "some ids");
      f("words", v.words, schema::any().unstamped(), "some words");
    });
    s.load_toml_string("[x]\nname = \"b\"\nlr = 1e-3\n[y]\non = true\nids = [0, 2, 4]\nwords = [\"p\", \"q\"]\n", "test");
    CHECK(v.name == "b");
    CHECK(v.lr == 1e-3);
    CHECK(v.on);
    CHECK(v.ids == std::vector<int64_t>{0, 2, 4});
    CHECK(v.words == std::vector<std::string>{"p", "q"});
    s.set("x.n=7");
    s.set("y.ids=1,3");
    CHECK(v.n == 7);
    CHECK(v.ids == std::vector<int64_t>{1, 3});
    CHECK_NOTHROW(s.validate());
    // Docs and ranges as comments; the text loads back to the same values.
    std::string text = s.to_toml(/*docs=*/true);
    CHECK(text.find("# a rate (> 0; default 0.1)\nlr = 0.001\n") != std::string::npos);
    CHECK(text.find("# a count (in [1, 10]; default 3)\nn = 7\n") != std::string::npos);
    SettingsV w = v;
    v = SettingsV{};
    s.load_toml_string(text, "round trip");
    CHECK(v.name == w.name);
    CHECK(v.lr == w.lr);
    CHECK(v.n == w.n);
    CHECK(v.ids == w.ids);
    CHECK(v.words == w.words);
    CHECK(s.to_toml(true) == text);
    // Stamps take stamped keys of the chosen groups.
    auto vals = s.values({"y"});
    CHECK(vals.size() == 2);
    CHECK(vals["y.ids"] == "[1, 3]");
    CHECK(s.values({"x.lr"}).size() == 1);
    // Errors: one line naming the key, what it expects and what was found.
    CHECK_THROWS_WITH_AS(s.set("x.nme=a"), doctest::Contains("unknown key 'x.nme'; did you mean 'x.name'?"), Error);
    CHECK_THROWS_WITH_AS(s.set("y.n=1"), doctest::Contains("did you mean 'x.n'?"), Error);  // the wrong section
    CHECK_THROWS_WITH_AS(s.set("x.completely_different=1"),
                         doctest::Contains("unknown key 'x.completely_different'; --print-config lists every key"), Error);
    CHECK_THROWS_WITH_AS(s.set("x.n=1.5"), doctest::Contains("x.n expects an integer, found '1.5'"), Error);
    CHECK_THROWS_WITH_AS(s.set("y.on=maybe"), doctest::Contains("y.on expects true or false"), Error);
    CHECK_THROWS_WITH_AS(s.load_toml_string("[x]\nlr = \"fast\"\n", "f.toml"),
                         doctest::Contains("x.lr expects a number, found 'fast'"), Error);
    CHECK_THROWS_WITH_AS(s.load_toml_string("[x\n", "broken.toml"), doctest::Contains("broken.toml"), Error);
    s.set("x.lr=-1");
    CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("config: x.lr must be > 0, found -1"), Error);
    s.set("x.lr=1");
    s.set("x.name=c");
    CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("config: x.name must be one of a, b, found 'c'"), Error);
    s.set("x.name=a");
    s.set("y.ids=1,-2");
    CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("config: y.ids must be >= 0, found -2"), Error);
  }

  TEST_CASE("edit distance: the banded search with a bound agrees with the whole table") {
    using settings::edit_distance;
    CHECK(edit_distance("", "") == 0);
    CHECK(edit_distance("abc", "") == 3);
    CHECK(edit_distance("", "abcd") == 4);
    CHECK(edit_distance("kitten", "sitting") == 3);
    CHECK(edit_distance("kitten", "sitting", 2) == 3);  // over the bound: bound + 1
    CHECK(edit_distance("kitten", "sitting", 3) == 3);
    CHECK(edit_distance("flaw", "lawn", 0) == 1);
    // Every bound against the plain table on strings over a small alphabet
    // (many near matches) of every length pair up to 9.
    std::mt19937 g(7);
    auto plain = [](const std::string& a, const std::string& b) {
      std::vector<std::vector<size_t>> t(a.size() + 1, std::vector<size_t>(b.size() + 1));
      for (size_t i = 0; i <= a.size(); ++i)
        for (size_t j = 0; j <= b.size(); ++j)
          t[i][j] = i == 0 ? j : j == 0 ? i
                                        : std::min({t[i - 1][j] + 1, t[i][j - 1] + 1,
                                                    t[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      return t[a.size()][b.size()];
    };
    int compared = 0;
    for (int trial = 0; trial < 400; ++trial) {
      std::string a(g() % 10, 'a'), b(g() % 10, 'a');
      for (auto& c : a) c = char('a' + g() % 3);
      for (auto& c : b) c = char('a' + g() % 3);
      const size_t want = plain(a, b);
      CHECK(edit_distance(a, b) == want);
      for (size_t k = 0; k <= 10; ++k) {
        CAPTURE(a); CAPTURE(b); CAPTURE(k);
        CHECK(edit_distance(a, b, k) == std::min(want, k + 1));
        ++compared;
      }
    }
    CHECK(compared == 4400);
  }

  TEST_CASE("every numeric key of the pipeline config refuses a value outside its range, naming key and range") {
    // Table-driven from the schema: for each key with a bounded range, a
    // value just outside it (or a string outside its choices).
    stages::Config base = stages::load_config(std::string(BISSL_SOURCE_DIR) + "/configs/pipeline_fashion_mnist.toml", {});
    int checked = 0;
    for (auto& f : base.settings().fields()) {
      const auto& r = f.rule;
      std::string full = f.section + "." + f.key;
      CAPTURE(full);
      std::vector<std::string> bad;
      if (!r.choices.empty()) bad.push_back("not-a-choice");
      auto outside = [&](double x, double step) {
        while (r.allows(x)) x += step;  // past a special value (upper_lr = -1)
        bad.push_back(schema::detail::value_text(x));
      };
      if (std::isfinite(r.lo)) outside(r.lo_open ? r.lo : r.lo - 1, -1);
      if (std::isfinite(r.hi)) outside(r.hi_open ? r.hi : r.hi + 1, 1);
      for (auto& b : bad) {
        bool list = f.default_value.rfind("[", 0) == 0;
        std::string value = list ? b + "," + b : b;
        if (list && r.min_length == 2 && r.max_length == 2) value = b + "," + b;
        stages::Config c = base;
        bool integer = f.default_value.find_first_of(".e\"[") == std::string::npos && f.default_value != "true" &&
                       f.default_value != "false";
        if (integer && b.find('.') != std::string::npos) continue;  // a fractional value is a parse error instead
        try {
          c.set(full + "=" + value);
        } catch (const Error& e) {
          // An unsigned key refuses a negative value while parsing.
          CHECK(std::string(e.what()).find(full) != std::string::npos);
          ++checked;
          continue;
        }
        CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains(("config: " + full + " must be " + r.text()).c_str()), Error);
        ++checked;
      }
    }
    CHECK(checked > 60);
    // λ > 0, the example.
    CHECK_THROWS_WITH_AS(stages::load_config("", {"pretrain.train.numerics=portable"}),
                         doctest::Contains("set pipeline.numerics"), Error);
    CHECK_NOTHROW(stages::load_config("", {"pretrain.train.numerics=portable", "pipeline.numerics=portable"}));
    CHECK_THROWS_WITH_AS(stages::load_config("", {"bissl.lambda=-1"}),
                         doctest::Contains("config: bissl.lambda must be > 0, found -1"), Error);
    CHECK_THROWS_WITH_AS(stages::load_config("", {"bissl.alternation=3"}),
                         doctest::Contains("unknown key 'bissl.alternation'; did you mean 'bissl.alternations'?"), Error);
    // Batch sizes compatible with ghost sizes.
    CHECK_THROWS_WITH_AS(stages::load_config("", {"bissl.lower_batch=300"}),
                         doctest::Contains("bissl.ghost_lower = 256 must divide bissl.lower_batch = 300"), Error);
    CHECK_NOTHROW(stages::load_config("", {"bissl.lower_batch=512"}));
    CHECK_THROWS_WITH_AS(stages::load_config("", {"finetune.lr_min=0.1", "finetune.lr_max=0.01"}),
                         doctest::Contains("finetune.lr_max must be >= finetune.lr_min"), Error);
  }

  TEST_CASE("--print-config round-trips: print, load, the same resolved config") {
    for (const char* file : {"pipeline_fashion_mnist.toml", "pipeline_fashion_mnist_mosaic.toml", ""}) {
      CAPTURE(file);
      stages::Config c = stages::load_config(*file ? std::string(BISSL_SOURCE_DIR) + "/configs/" + file : "",
                                             {"bissl.lambda=0.25", "task.classes=1,3"}, /*quick=*/true);
      std::string printed = c.to_toml(/*docs=*/true);
      // The comments give the defaults, not the values set (also in a copy of the config).
      CHECK(printed.find("(> 0; default 0.001)\nlambda = 0.25\n") != std::string::npos);
      stages::Config copied = c;
      CHECK(copied.to_toml(true) == printed);
      pretrain::Config p;
      p.lr = 1.5;
      CHECK(p.to_toml(true).find("# peak lr (> 0; default 4.8)\nlr = 1.5\n") != std::string::npos);
      testing::TempDir tmp("print");
      std::ofstream(tmp.file("c.toml")) << printed;
      stages::Config d = stages::load_config(tmp.file("c.toml"), {});
      CHECK(d.to_toml(true) == printed);
      CHECK(d.settings().values({"pipeline", "task", "warmup", "bissl", "finetune", "eval", "pretrain"}) ==
            c.settings().values({"pipeline", "task", "warmup", "bissl", "finetune", "eval", "pretrain"}));
    }
  }

  TEST_CASE("stamps: what a unit reads, the reuse rule, leftovers of a killed start, --no-recompute") {
    testing::TempDir tmp("stamps");
    stages::Config c;
    c.device = "cpu";
    const stages::FinetuneSpec ft{"noisytune", "", true, false, 0.15};
    stages::FinetuneSpec other = ft;
    other.noisytune = 0.3;
    const stages::Task task = tiny_task(7);
    // A search reads its arm's spec; a seed count is not part of it.
    CHECK(stages::search_stamp(c, task, ft).signature() != stages::search_stamp(c, task, other).signature());
    stages::Config more = c;
    more.finetune.seeds = 3;
    CHECK(stages::search_stamp(more, task, ft).signature() == stages::search_stamp(c, task, ft).signature());
    more.finetune.search_epochs = 0;  // trials now train for finetune.epochs
    more.finetune.epochs = 7;
    CHECK(stages::first_difference(stages::search_stamp(c, task, ft), stages::search_stamp(more, task, ft)) ==
          "finetune.epochs = 400 then, 7 now");
    // It reads the task's images: one changed pixel is a different input.
    stages::Task edited = tiny_task(7);
    auto test = std::make_shared<data::ImageSet>(*edited.test);
    test->pixels[5] = 8;
    edited.test = test;
    CHECK(task.digest() == tiny_task(7).digest());
    CHECK(stages::first_difference(stages::search_stamp(c, task, ft), stages::search_stamp(c, edited, ft))
              .rfind("input task data changed (", 0) == 0);
    stages::Hyper h;
    h.lr = 0.1, h.weight_decay = 1e-4;
    CHECK(stages::seed_stamp(c, task, ft, h, 0).signature() != stages::seed_stamp(c, edited, ft, h, 0).signature());
    // Outputs and logging cadence are not stamped; the resolved device is.
    stages::Config moved = c;
    moved.out = "elsewhere", moved.workers = 7, moved.bissl.checkpoint_every = 3;
    const auto fields = [](const stages::Config& x) { return stages::Stamp::of(x, "u", {"pipeline", "bissl"}); };
    CHECK(fields(moved).signature() == fields(c).signature());
    CHECK(fields(c).settings["device (resolved)"] == "cpu");

    const std::string dir = tmp.file("unit");
    stages::Stamp st = fields(c);
    CHECK(stages::begin_unit(dir, st, false).state == stages::UnitState::Fresh);
    CHECK(stages::begin_unit(dir, st, false).state == stages::UnitState::Resumed);  // killed before finishing
    std::ofstream(dir + "/output.txt") << "done";
    stages::finish_unit(dir, st);
    CHECK_FALSE(fs::exists(dir + "/stamp.partial.json"));
    auto again = stages::begin_unit(dir, st, false);
    CHECK(again.state == stages::UnitState::Reused);
    CHECK(again.made.code == code_version());
    CHECK(again.made.made_at.rfind("20", 0) == 0);
    stages::Config changed = c;
    changed.bissl.lambda = 0.5;
    CHECK_THROWS_WITH_AS(stages::begin_unit(dir, fields(changed), true),
                         doctest::Contains(("u (" + dir + ") was made with other settings: bissl.lambda = 0.001 then, 0.5 now").c_str()),
                         Error);
    CHECK(fs::exists(dir + "/output.txt"));  // --no-recompute touched nothing
    auto re = stages::begin_unit(dir, fields(changed), false);
    CHECK(re.state == stages::UnitState::Fresh);
    CHECK(re.changed == "bissl.lambda = 0.001 then, 0.5 now");
    CHECK_FALSE(fs::exists(dir + "/output.txt"));  // the old outputs are gone
    CHECK_FALSE(fs::exists(dir + ".stale"));
    // A kill inside the partial stamp's write leaves only its temporary: the unit never started.
    const std::string dir2 = tmp.file("unit2");
    fs::create_directories(dir2);
    std::ofstream(dir2 + "/stamp.partial.json.tmp.12345") << "{\"unit\": ";
    CHECK(stages::begin_unit(dir2, st, false).state == stages::UnitState::Fresh);
    CHECK_FALSE(fs::exists(dir2 + "/stamp.partial.json.tmp.12345"));
    // Anything else without a stamp is refused, not deleted.
    const std::string dir3 = tmp.file("unit3");
    fs::create_directories(dir3);
    std::ofstream(dir3 + "/mine.txt") << "x";
    CHECK_THROWS_WITH_AS(stages::begin_unit(dir3, st, false), doctest::Contains("holds files but no stamp"), Error);
    CHECK(fs::exists(dir3 + "/mine.txt"));
  }

  TEST_CASE("a full disk during a checkpoint or result write: one clear error, the previous file intact") {
    testing::TempDir tmp("full");
    const std::string ckpt = tmp.file("checkpoint.safetensors"), res = tmp.file("result.json");
    Tensor small = ones({16, 16});
    io::save_safetensors(ckpt, {{"w", small}}, {{"step", "1"}});
    files::write_json_atomic(res, nlohmann::json{{"step", 1}});
    // Files may grow to 64 KiB only (writes past it fail with EFBIG, as they
    // would with ENOSPC on a full disk; SIGXFSZ ignored so it is an error).
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto prev = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 64 * 1024;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    std::string ck_err, res_err;
    try {
      io::save_safetensors(ckpt, {{"w", ones({256, 256})}}, {{"step", "2"}});  // 256 KiB
    } catch (const Error& e) {
      ck_err = e.what();
    }
    try {
      files::write_text_atomic(res, std::string(200000, 'x'));
    } catch (const Error& e) {
      res_err = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, prev);
    CHECK(ck_err.find("checkpoint.safetensors") != std::string::npos);
    CHECK(ck_err.find("File too large") != std::string::npos);
    CHECK(res_err.find("cannot write '" + res + "': writing failed: File too large") != std::string::npos);
    CHECK(ck_err.find('\n') == std::string::npos);
    CHECK(res_err.find('\n') == std::string::npos);
    // The previous checkpoint and result still load, and no temporary is left behind.
    auto f = io::load_safetensors(ckpt);
    CHECK(f.metadata.at("step") == "1");
    CHECK(f.tensors.at(0).second.shape() == Shape{16, 16});
    CHECK(files::read_json(res)["step"] == 1);
    int entries = 0;
    for (auto& e : fs::directory_iterator(tmp.dir)) entries += e.is_regular_file();
    CHECK(entries == 2);
    // An output folder that cannot be made is one line naming it.
    std::ofstream(tmp.file("a_file")) << "x";
    stages::Config c;
    c.out = tmp.file("a_file") + "/run";
    CHECK_THROWS_WITH_AS(stages::run_pipeline(c), doctest::Contains("a_file/run"), std::exception);
  }

  TEST_CASE("the pipeline config: the shipped file loads, round-trips and validates") {
    stages::Config c = stages::load_config(std::string(BISSL_SOURCE_DIR) + "/configs/pipeline_fashion_mnist.toml", {});
    CHECK(c.task.classes == std::vector<int64_t>{0, 2, 4, 6});
    CHECK(c.pretrain.method.name == "simclr");
    CHECK(c.pretrain.model.width == 0.25);
    CHECK(c.bissl.lambda == 0.001);  // spec defaults where the file is silent
    CHECK(c.bissl.delta == 10.0);
    CHECK(c.bissl.cg.iterations == 5);
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
    copy.set("pipeline.arms=[\"ft\", \"ij_discarded\"]");  // as --print-config writes it
    CHECK(copy.arms == std::vector<std::string>{"ft", "ij_discarded"});
    CHECK_THROWS_WITH_AS(stages::load_config("", {"pipeline.arms=ft,bisl"}),
                         doctest::Contains("pipeline.arms must be one of ft, bissl, ij_discarded"), Error);
    CHECK_THROWS_WITH_AS(stages::load_config("/nonexistent.toml", {}), doctest::Contains("expected a readable TOML file"),
                         Error);
    CHECK_THROWS_WITH_AS(stages::load_config("", {"pretrain.train.optimizer=adam"}),
                         doctest::Contains("pretrain.train.optimizer must be one of lars, adamw, sgd, found 'adam'"), Error);
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

  TEST_CASE("the folder configs load: the natural-image pipeline's settings, GPU- and CPU-sized") {
    const std::string dir = std::string(BISSL_SOURCE_DIR) + "/configs/";
    stages::Config g = stages::load_config(dir + "pipeline_folder_r50.toml", {});
    CHECK(g.task.dataset == "folder");
    CHECK(g.task.image_size == 96);
    CHECK(g.task.crop_scale == std::vector<double>{0.08, 1.0});
    CHECK(g.task.train_interp == "bicubic");
    CHECK(g.task.lazy);
    CHECK(g.pretrain.dataset == "folder");
    CHECK(g.pretrain.normalize == "pretext");
    CHECK(g.pretrain.model.arch == "resnet50");
    CHECK(g.pretrain.batch_size == 1024);
    CHECK(g.bissl.lower_batch == 1024);  // the spec's, from the defaults
    CHECK(g.finetune.epochs == 400);
    // Resize(109) + CenterCrop(96) for evaluation, from the task's image size.
    CHECK(stages::downstream_eval_view(g.task, 3).resize == 109);
    CHECK(stages::downstream_train_view(g.task, 3).interp == data::Interp::Bicubic);
    stages::Config c = stages::load_config(dir + "pipeline_folder_cpu.toml", {});
    CHECK(c.task.dataset == "folder");
    CHECK(c.pretrain.lazy);
    CHECK(c.pretrain.normalize == "pretext");
    CHECK(c.device == "cpu");
    // lazy is for folders only.
    CHECK_THROWS_WITH_AS(stages::load_config("", {"pretrain.data.lazy=true"}),
                         doctest::Contains("data.lazy applies to dataset = folder"), Error);
    CHECK_THROWS_WITH_AS(stages::load_config("", {"task.lazy=true"}),
                         doctest::Contains("task.lazy applies to dataset = folder or list"), Error);
  }

  TEST_CASE("a torchvision-style checkpoint (with its classifier) loads as a stage backbone") {
    testing::TempDir tmp("torchvision");
    stages::Config c = stages::load_config(std::string(BISSL_SOURCE_DIR) + "/configs/pipeline_fashion_mnist.toml", {});
    // A ResNet-18 at the config's width with a 1000-way fc, saved in PyTorch layout.
    models::ResNetConfig rc;
    rc.width = c.pretrain.model.width;
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

  TEST_CASE("normalize = pretext through every stage: the pretraining's statistics in every view and backbone") {
    if (skip_without_fashion_mnist()) return;
    testing::TempDir tmp("normalize");
    const std::vector<std::string> sets = {"pretrain.data.limit=1024", "pipeline.arms=ft,bissl,random_init",
                                           "finetune.search_trials=0", "finetune.lr=0.05", "finetune.epochs=1",
                                           "finetune.seeds=1", "bissl.alternations=1", "eval.tsne_points=0"};
    std::vector<std::string> with = sets;
    with.push_back("pretrain.data.normalize=pretext");
    stages::Config c = quick_config("pipeline_fashion_mnist.toml", with, tmp);
    stages::run_pipeline(c);
    const data::Normalization n = pretrain::normalization_in_file(c.out + "/pretrain/backbone.safetensors");
    REQUIRE(!n.empty());
    CHECK(n.mean != data::default_mean(1));
    for (const char* f : {"warmup/backbone.safetensors", "train/bissl/backbone.safetensors",
                          "train/bissl/backbone_d.safetensors", "finetune/ft/seed0/backbone.safetensors",
                          "finetune/bissl/seed0/backbone.safetensors", "finetune/random_init/seed0/backbone.safetensors"}) {
      CAPTURE(f);
      CHECK(pretrain::normalization_in_file(c.out + "/" + f) == n);
    }
    // The views of a stage that starts from such a backbone.
    stages::Config r = stages::with_normalization(c, c.out + "/train/bissl/backbone.safetensors", 1);
    CHECK(stages::downstream_train_view(r.task, 1).mean == n.mean);
    CHECK(stages::downstream_eval_view(r.task, 1).std == n.std);
    CHECK(pretrain::pretext_views(r.pretrain, 1).at(1).mean == n.mean);
    // Negative control: the default constants give other results.
    testing::TempDir tmp2("normalize_default");
    stages::Config d = quick_config("pipeline_fashion_mnist.toml", sets, tmp2);
    stages::run_pipeline(d);
    CHECK(slurp(c.out + "/warmup/metrics.jsonl") != slurp(d.out + "/warmup/metrics.jsonl"));
    CHECK(pretrain::normalization_in_file(d.out + "/warmup/backbone.safetensors").empty());
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
    nn::load_module(head, c.out + "/finetune/ft/seed0/head.safetensors", "head");
    auto acc = stages::evaluate(*backbone, head, *task.test, 10, c.task, Device::CPU, 1);
    CHECK(acc.multi_label);
    CHECK(acc.map == doctest::Approx(r["test"]["map"].get<double>()).epsilon(1e-12));
    CHECK(stages::evaluate(*backbone, head, *task.test, 10, c.task, Device::CPU, 1, true).map == acc.map);

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
    CHECK(stage_cell(again, "train bissl").rfind("reused, made ", 0) == 0);

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

    // Two stage seeds in the same run: stage seed 0's units are found, stage
    // seed 1's run (BiSSL from other stream seeds; FT seeds 2 and 3 for both
    // arms), and the report tests with the stage seed as the unit.
    {
      stages::Config c2 = c;
      c2.stage_seeds = 2;
      const std::string staged = stages::run_pipeline(c2);
      CHECK(stage_cell(staged, "train bissl").rfind("reused, made ", 0) == 0);
      CHECK(stage_cell(staged, "finetune ft").rfind("reused, made ", 0) == 0);
      CHECK(stage_cell(staged, "train bissl (stage seed 1)").rfind("computed now", 0) == 0);
      for (const char* f : {"train/bissl-s1/backbone.safetensors", "finetune/bissl-s1/seed2/result.json",
                            "finetune/bissl-s1/seed3/result.json", "finetune/ft-s1/seed3/result.json"})
        CHECK_MESSAGE(fs::exists(c.out + "/" + f), "missing ", f);
      CHECK_FALSE(fs::exists(c.out + "/finetune/ft-s1/seed0"));
      CHECK(slurp(c.out + "/train/bissl-s1/backbone.safetensors") != slurp(c.out + "/train/bissl/backbone.safetensors"));
      auto ev = nlohmann::json::parse(slurp(c.out + "/eval/eval.json"));
      auto bs = ev["arms"]["bissl"];
      CHECK(bs["test_top1"].size() == 4);  // pooled: 2 stage seeds × 2 seeds
      CHECK(bs["vs_ft"]["assignments"] == 70);  // C(8, 4)
      CHECK(bs["stage_seeds"]["stage_seeds"] == 2);
      CHECK(bs["stage_seeds"]["vs_ft_stage_permutation"]["assignments"] == 6);  // C(4, 2) over stage-seed means
      CHECK(bs["stage_seeds"]["vs_ft_two_level_bootstrap"]["exact"] == true);
      // Stage seed 0's block is the one-stage-seed run's.
      auto first = nlohmann::json::parse(slurp(c.out + "/finetune/bissl/result.json"));
      CHECK(bs["stage_seeds"]["test_top1"][0] ==
            nlohmann::json::array({first["runs"][0]["test"]["top1"], first["runs"][1]["test"]["top1"]}));
      CHECK(staged.find("## Stage seeds") != std::string::npos);
      CHECK(staged.find("| bissl |") != std::string::npos);
      CHECK(staged.find("6 assignments: the smallest one-sided p is 0.1667") != std::string::npos);
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

    // Short last batches kept as the reference's devices serve them: 200
    // training images in batches of 64 over W = 64 / 32 = 2 devices end each
    // epoch with 8 images, ghost-normalised as 2 x 4.
    {
      REQUIRE(task.train->n == 200);
      stages::LoaderDownstreamStream keep(task.train, c.task, 64, 5, 0, Device::CPU, 2);
      REQUIRE(keep.batches_per_epoch() == 4);
      std::vector<int64_t> ghosts, sizes;
      for (int i = 0; i < 4; ++i) {
        auto b = keep.next();
        sizes.push_back(b.x.shape()[0]), ghosts.push_back(b.ghost);
      }
      CHECK(sizes == std::vector<int64_t>{64, 64, 64, 8});
      CHECK(ghosts == std::vector<int64_t>{0, 0, 0, 4});
      stages::LoaderDownstreamStream drop(task.train, c.task, 64, 5, 0, Device::CPU);
      CHECK(drop.batches_per_epoch() == 3);
      stages::Config ck = c2;
      ck.bissl.short_batches = "keep";
      ck.bissl.ghost_upper = 32;
      ck.validate();
      stages::Config cd = ck;
      cd.bissl.short_batches = "drop";
      // 2 alternations x 2 upper steps: the 4th upper batch is the short one.
      stages::run_bissl(ck, task, in, tmp.file("keep"), "bissl", false, false);
      stages::run_bissl(cd, task, in, tmp.file("drop"), "bissl", false, false);
      CHECK(slurp(tmp.file("keep") + "/backbone_d.safetensors") != slurp(tmp.file("drop") + "/backbone_d.safetensors"));
      // drop is the default, and the default stays out of the stamp.
      const std::string pre_digest = "x";
      CHECK(stages::bissl_stamp(c2, task, in, pre_digest).settings.count("bissl.short_batches") == 0);
      CHECK(stages::bissl_stamp(ck, task, in, pre_digest).settings["bissl.short_batches"] == "\"keep\"");
    }

    // Missing inputs name the file.
    stages::BisslInputs bad = in;
    bad.objective = tmp.file("nope.safetensors");
    CHECK_THROWS_WITH_AS(stages::run_bissl(c2, task, bad, tmp.file("bad"), "bissl", false, false),
                         doctest::Contains("nope.safetensors"), Error);
  }
}

// Its own ctest entry (tests/CMakeLists.txt: bissl_test_apart), beside the rest.
TEST_SUITE("parallel: reuse") {
  TEST_CASE("a rerun reuses exactly what today's settings would make: each stage's key reruns it and what reads it") {
    if (skip_without_fashion_mnist()) return;
    testing::TempDir tmp("reuse");
    // The task reads a copy of the dataset, changed in place at the end.
    const std::string fm = tmp.file("fashion-mnist");
    fs::create_directories(fm);
    for (auto& e : fs::directory_iterator(data::kFashionMnistDir))
      if (e.is_regular_file()) fs::copy_file(e.path(), fm + "/" + e.path().filename().string());
    stages::Config c = quick_config("pipeline_fashion_mnist.toml", {"task.root=" + fm}, tmp);
    stages::run_pipeline(c);
    auto before = unit_stamps(c.out);
    const std::set<std::string> ft = {"finetune/ft/seed0", "finetune/ft/seed1"};
    const std::set<std::string> bissl = {"train/bissl", "finetune/bissl/seed0", "finetune/bissl/seed1"};
    const std::set<std::string> ij = {"train/ij_discarded", "finetune/ij_discarded/seed0", "finetune/ij_discarded/seed1"};
    auto all_of = [](std::initializer_list<std::set<std::string>> parts) {
      std::set<std::string> r;
      for (auto& p : parts) r.insert(p.begin(), p.end());
      return r;
    };
    struct Change {
      std::string set;
      std::set<std::string> expected;
    };
    // Each change on top of the previous ones, in the order a user might try them.
    const std::vector<Change> changes = {
        {"eval.tsne_points=100", {}},                                   // evaluation only (always computed)
        {"finetune.epochs=3", all_of({ft, {"finetune/bissl/seed0", "finetune/bissl/seed1"},
                                      {"finetune/ij_discarded/seed0", "finetune/ij_discarded/seed1"}})},
        {"finetune.seeds=3", {"finetune/ft/seed2", "finetune/bissl/seed2", "finetune/ij_discarded/seed2"}},
        {"bissl.lambda=0.5", all_of({bissl, ij, {"finetune/bissl/seed2", "finetune/ij_discarded/seed2"}})},
        {"warmup.epochs=2", all_of({{"warmup"}, bissl, ij, {"finetune/bissl/seed2", "finetune/ij_discarded/seed2"}})},
        {"finetune.lr_max=0.5", all_of({{"finetune/search"}, ft, bissl, ij,
                                        {"finetune/ft/seed2", "finetune/bissl/seed2", "finetune/ij_discarded/seed2"}})},
    };
    std::vector<std::string> sets = {"task.root=" + fm};
    std::string report;
    for (auto& ch : changes) {
      CAPTURE(ch.set);
      sets.push_back(ch.set);
      stages::Config ci = quick_config("pipeline_fashion_mnist.toml", sets, tmp);
      ci.out = c.out;
      report = stages::run_pipeline(ci);
      auto after = unit_stamps(c.out);
      CHECK(rerun(before, after) == ch.expected);
      // The report says which stages ran now and which were reused, made when and by what.
      CHECK(stage_cell(report, "eval").rfind("computed now", 0) == 0);
      CHECK(stage_cell(report, "pretrain").rfind("reused, made 20", 0) == 0);
      CHECK(stage_cell(report, "pretrain").find(code_version()) != std::string::npos);
      CHECK(stage_cell(report, "train bissl").rfind(ch.expected.count("train/bissl") ? "computed now" : "reused", 0) == 0);
      CHECK(stage_cell(report, "finetune ft").rfind(ch.expected.count("finetune/ft/seed0") ||
                                                             ch.expected.count("finetune/ft/seed2")
                                                         ? "computed now"
                                                         : "reused",
                                                     0) == 0);
      before = after;
    }
    // The scenario: --no-recompute refuses, naming the first differing key and both values.
    sets.push_back("bissl.lambda=0.25");
    stages::Config cn = quick_config("pipeline_fashion_mnist.toml", sets, tmp);
    cn.out = c.out;
    cn.no_recompute = true;
    CHECK_THROWS_WITH_AS(stages::run_pipeline(cn), doctest::Contains("bissl.lambda = 0.5 then, 0.25 now"), Error);
    CHECK(unit_stamps(c.out) == before);  // nothing was touched
    // A pretraining key reruns everything.
    sets.back() = "pretrain.train.lr=2.4";
    stages::Config cp = quick_config("pipeline_fashion_mnist.toml", sets, tmp);
    cp.out = c.out;
    stages::run_pipeline(cp);
    auto after = unit_stamps(c.out);
    CHECK(rerun(before, after).size() == after.size());
    // The task's test images changed in place, settings unchanged: every unit
    // that reads the task reruns (--no-recompute names the input), pretraining
    // (another root) does not.
    {
      bool gz = false;
      std::vector<uint8_t> raw = data::read_maybe_gzip(fm + "/t10k-images-idx3-ubyte.gz", &gz);
      for (size_t i = 16 + 400; i < raw.size(); i += 784) raw[i] ^= 0x55;  // one pixel of every image
      fs::remove(fm + "/t10k-images-idx3-ubyte.gz");
      std::ofstream(fm + "/t10k-images-idx3-ubyte", std::ios::binary)
          .write(reinterpret_cast<const char*>(raw.data()), std::streamsize(raw.size()));
      cp.no_recompute = true;
      CHECK_THROWS_WITH_AS(stages::run_pipeline(cp), doctest::Contains("was made with other settings: input task data changed ("),
                           Error);
      CHECK(unit_stamps(c.out) == after);
      cp.no_recompute = false;
      stages::run_pipeline(cp);
      auto edited = unit_stamps(c.out);
      std::set<std::string> readers;
      for (auto& [unit, id] : edited)
        if (unit != "pretrain") readers.insert(unit);
      CHECK(rerun(after, edited) == readers);
      after = edited;
    }
    // Someone else's pretraining (pipeline.pretrained) is checked against today's [pretrain.*], never recomputed.
    {
      testing::TempDir other("borrowed");
      stages::Config cb = quick_config("pipeline_fashion_mnist.toml", {"pretrain.train.lr=3.0"}, other);
      cb.pretrained = c.out + "/pretrain";
      CHECK_THROWS_WITH_AS(stages::run_pipeline(cb),
                           doctest::Contains("(pipeline.pretrained) was made with other settings: pretrain.train.lr = 2.4 then, 3.0 now"),
                           Error);
      CHECK(unit_stamps(c.out) == after);
    }
    // Files without a stamp are not silently reused or deleted.
    testing::TempDir other("unstamped");
    stages::Config cu = quick_config("pipeline_fashion_mnist.toml", {}, other);
    fs::create_directories(cu.out + "/pretrain");
    std::ofstream(cu.out + "/pretrain/backbone.safetensors") << "something";
    CHECK_THROWS_WITH_AS(stages::run_pipeline(cu), doctest::Contains("holds files but no stamp"), Error);
    CHECK(fs::exists(cu.out + "/pretrain/backbone.safetensors"));
  }
}
