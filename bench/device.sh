#!/usr/bin/env bash
# Device benchmarks (software accelerator vs onnxruntime; serve-loop vs raw link throughput).
# The Python lives in device_bench.py: a bench/device.py would shadow the `device` package for
# every script run from bench/.   Usage: bench/device.sh [--seconds 10] [--skip-accel] [--skip-link]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/device_bench.py "$@"
