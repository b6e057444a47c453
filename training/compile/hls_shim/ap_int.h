// qdev: ap_int.h as the C++ simulation sees it: Xilinx's open-source header (found next on the
// include path, ../shared/vendor/HLS_arbitrary_Precision_Types) plus what Vitis HLS's own copy
// brings along and the generated code relies on: std::numeric_limits for ap_int/ap_uint
// (qdev_ap_limits.h) and the name `half`.
#ifndef QDEV_SHIM_AP_INT_H
#define QDEV_SHIM_AP_INT_H
#include_next <ap_int.h>
#include "qdev_ap_limits.h"
// FINN's cnpy.h names `half` in a type map (is_same<T, half>); nothing here computes with it.
// Not a floating-point type: a 16-bit payload that only gives the name a distinct type.
struct half { unsigned short bits; };
#endif
