#!/bin/sh
# check_sum.sh A B ... EXPECTED: fails (exit 1) unless A + B + ... == EXPECTED.
expected=$(eval echo \${$#})
sum=0
i=1
for n in "$@"; do
  [ "$i" -eq "$#" ] && break
  sum=$((sum + n))
  i=$((i + 1))
done
if [ "$sum" -ne "$expected" ]; then
  echo "check_sum.sh: expected $expected, got $sum" >&2
  exit 1
fi
echo "sum is $sum"
