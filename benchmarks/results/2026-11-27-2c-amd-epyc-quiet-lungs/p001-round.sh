#!/bin/bash
# Alternating rounds on P001 with the default model (192 px, lung crop) on a quiet machine: plain loop,
# ctedge FP32, ctedge CPU INT8 engine, the 19-slice sample; wall and CPU (user+sys of the tree).
# ENGINE: ctedge build-engine MODEL --int8 --target cpu --calib VAL_IMAGES.csv --calib-size 200
cd "$(dirname "$0")/../../.."
export CTEDGE_CACHE=/tmp/speed-cache
S=../shared/data/covid-ct-md/COVID-19/P001; M=models/ctedge-resnet50-ucsd-sarscov2-ctmd.onnx
E=${ENGINE:-/work/runs/v3/engine-int8}
for r in 1 2 3; do
  echo "round $r $(uptime | sed 's/.*load/load/')"
  /usr/bin/time -f "plain wall %e cpu_user %U cpu_sys %S rss_kb %M" .venv/bin/python -m ctedge.benchmarks.plain_loop $S $M > /dev/null
  /usr/bin/time -f "fp32 wall %e cpu_user %U cpu_sys %S rss_kb %M" .venv/bin/ctedge classify $S --format json --out /tmp/speed-r32.json > /dev/null
  /usr/bin/time -f "int8 wall %e cpu_user %U cpu_sys %S rss_kb %M" .venv/bin/ctedge classify $S --model $E --format json --out /tmp/speed-r8.json > /dev/null
  python3 -c "import json;print('int8 timings', {k: round(v,2) for k,v in json.load(open('/tmp/speed-r8.json'))['timings_s'].items()})"
  /usr/bin/time -f "sample-fp32 wall %e cpu_user %U cpu_sys %S rss_kb %M" .venv/bin/ctedge classify samples/P001-every8th --format json --out /tmp/speed-rs.json > /dev/null
  /usr/bin/time -f "sample-int8 wall %e cpu_user %U cpu_sys %S rss_kb %M" .venv/bin/ctedge classify samples/P001-every8th --model $E --format json --out /tmp/speed-rs8.json > /dev/null
done
echo "end $(uptime | sed 's/.*load/load/')"
