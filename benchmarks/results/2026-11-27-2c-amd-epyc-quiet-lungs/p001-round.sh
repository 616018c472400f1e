#!/bin/bash
# The rounds of ../2026-11-27-2c-amd-epyc-quiet/p001-round.sh (plain loop, ctedge FP32, ctedge CPU
# INT8 engine, the 19-slice sample) with the lung-crop default model and its INT8 engine:
# ENGINE from `ctedge build-engine MODEL --int8 --target cpu --calib VAL_IMAGES.csv --calib-size 200`.
ENGINE=${ENGINE:-/work/runs/v3/engine-int8} exec bash "$(dirname "$0")/../2026-11-27-2c-amd-epyc-quiet/p001-round.sh"
