// stb_image_write's implementation, compiled once for everything that writes
// PNG / JPEG files (the tests' image fixtures, bissl-bench's folder bench).
// Debian's stb 2.27 shifts negative values while coding JPEG (undefined by
// the letter, harmless on every compiler we use): UBSan's shift check is off
// for this file only (CMakeLists.txt, docs/security.md).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop
