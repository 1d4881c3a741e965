#!/bin/sh
# gen-orch.sh N DIR: writes DIR/main.hcl declaring N distinct daemons
# (daemon "d00001" ... ), each `sleep 86400` with one env variable: the
# configuration of the scale benchmarks (cmd/orch/scale_bench_test.go).
set -eu
n=${1:?usage: gen-orch.sh N DIR}
dir=${2:?usage: gen-orch.sh N DIR}
mkdir -p "$dir"
awk -v n="$n" 'BEGIN {
	print "orch {\n  name = \"scale\"\n}\n"
	for (i = 1; i <= n; i++)
		printf "daemon \"d%05d\" {\n  command = [\"sleep\", \"86400\"]\n  env     = { INDEX = \"%d\" }\n}\n\n", i, i
}' > "$dir/main.hcl"
