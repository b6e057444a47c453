// qdev: hls_math.h stand-in: the C++ standard library's math, which is what a C++ simulation of
// integer-only dataflow layers needs. Does not model Vitis' fixed-point math functions.
#ifndef QDEV_HLS_MATH_H
#define QDEV_HLS_MATH_H
#include <cmath>
namespace hls { using std::abs; using std::exp; using std::log; using std::sqrt; using std::floor; using std::ceil; }
#endif
