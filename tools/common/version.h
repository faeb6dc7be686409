#pragma once
// The code version a build was made from: the git commit (short), with
// "+changes" when the work tree had uncommitted changes, or "unknown".
// Written into every stage stamp and shown in the report.
#include <string>

namespace bissl {
const std::string& code_version();
}
