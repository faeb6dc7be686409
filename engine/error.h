#pragma once
// bissl::Error and the checks that raise it. Messages say what was expected
// and what was found, on one line, so executables can print them as-is.
#include <sstream>
#include <stdexcept>
#include <string>

namespace bissl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void str_append(std::ostringstream&) {}
template <class T, class... R>
void str_append(std::ostringstream& os, const T& v, const R&... rest) {
  os << v;
  str_append(os, rest...);
}
}  // namespace detail

// Concatenates anything streamable into a string.
template <class... A>
std::string str(const A&... a) {
  std::ostringstream os;
  detail::str_append(os, a...);
  return os.str();
}

}  // namespace bissl

#define BISSL_CHECK(cond, ...)                                   \
  do {                                                           \
    if (!(cond)) throw ::bissl::Error(::bissl::str(__VA_ARGS__)); \
  } while (0)
