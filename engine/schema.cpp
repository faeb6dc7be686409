#include "engine/schema.h"

#include "engine/error.h"

namespace bissl::schema::detail {

std::string value_text(double d) {
  char b[40];
  std::snprintf(b, sizeof b, "%.17g", d);
  for (int prec : {6, 10, 15, 17}) {  // the shortest text that reads back exactly
    std::snprintf(b, sizeof b, "%.*g", prec, d);
    if (std::strtod(b, nullptr) == d) break;
  }
  return b;
}

void out_of_range(const std::string& what, const Rule& r, const std::string& found) {
  throw Error(str("config: ", what, " must be ", r.text(), ", found ", found));
}

}  // namespace bissl::schema::detail
