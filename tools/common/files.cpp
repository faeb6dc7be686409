#include "tools/common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "engine/dist/comm.h"
#include "engine/error.h"

namespace bissl::files {

namespace {
void write_text_here(const std::string& path, const std::string& text) {
  // Written to a temporary name, flushed to disk, then renamed over `path`:
  // a kill or a full disk at any moment leaves either the old file or the
  // new one, never a part of one. On failure the temporary is removed and
  // the old file is untouched.
  const std::string tmp = str(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  BISSL_CHECK(fd >= 0, "cannot write '", path, "': creating '", tmp, "' failed: ", std::strerror(errno));
  auto fail = [&](const char* what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(str("cannot write '", path, "': ", what, " failed: ", std::strerror(e),
                    " (the previous version, if any, is unchanged)"));
  };
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      fail("writing");
    }
    done += size_t(n);
  }
  if (::fsync(fd) != 0) fail("flushing to disk");
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw Error(str("cannot write '", path, "': closing failed: ", std::strerror(e)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw Error(str("cannot write '", path, "': renaming '", tmp, "' over it failed: ", std::strerror(e)));
  }
}

}  // namespace

// On several ranks rank 0 writes and the others wait (dist::on_root).
void write_text_atomic(const std::string& path, const std::string& text) {
  dist::on_root([&] { write_text_here(path, text); });
}

void write_json_atomic(const std::string& path, const nlohmann::json& j) { write_text_atomic(path, j.dump(1) + "\n"); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  BISSL_CHECK(in, "expected a JSON file at '", path, "', found none");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str("'", path, "' is not valid JSON (", e.what(), "); delete it to recompute that result"));
  }
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  for (size_t i = 0; i < lines.size(); ++i) {
    try {
      rows.push_back(nlohmann::json::parse(lines[i]));
    } catch (const nlohmann::json::exception& e) {
      if (i + 1 == lines.size()) {
        std::fprintf(stderr, "warning: dropping the unreadable last line of %s (a write cut short?)\n", path.c_str());
        break;
      }
      throw Error(str("'", path, "' line ", i + 1, " is not valid JSON (", e.what(), ")"));
    }
  }
  return rows;
}

double json_number(const nlohmann::json& j, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::numeric_limits<double>::quiet_NaN();
  return it->get<double>();
}

}  // namespace bissl::files
