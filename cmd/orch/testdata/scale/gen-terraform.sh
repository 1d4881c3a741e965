#!/bin/sh
# gen-terraform.sh N DIR: writes DIR/main.tf declaring N terraform_data
# resources of the same shape as gen-orch.sh's daemons (a built-in
# resource: terraform init needs no provider download, so it works
# offline). The scale benchmarks compare Terraform's plans with orch's.
set -eu
n=${1:?usage: gen-terraform.sh N DIR}
dir=${2:?usage: gen-terraform.sh N DIR}
mkdir -p "$dir"
awk -v n="$n" 'BEGIN {
	for (i = 1; i <= n; i++)
		printf "resource \"terraform_data\" \"d%05d\" {\n  input = { command = [\"sleep\", \"86400\"], INDEX = \"%d\" }\n}\n\n", i, i
}' > "$dir/main.tf"
