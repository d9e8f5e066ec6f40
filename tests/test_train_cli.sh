#!/usr/bin/env bash
# tests/test_train_cli.sh CALOGRAD — `calograd train` / `generate` from the command line:
#  - Ctrl-C (SIGINT) saves a checkpoint and exits 130; --resume then reproduces the losses
#    of an uninterrupted run with the same seed, step by step;
#  - a NaN loss stops training with a message naming the step and the last checkpoint;
#  - bad flags, a missing or incompatible data file, a checkpoint from another model or a
#    corrupted one: one clear message and exit code 2.
set -u
CG="$1"
T=$(mktemp -d /tmp/cg_train_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
check() { # check NAME EXPECTED_RC PATTERN -- command...
  local name=$1 want=$2 pat=$3; shift 4
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" != "$want" ] || ! cat "$T/out" "$T/err" | grep -q -- "$pat"; then
    echo "FAIL $name: rc $rc (want $want), output: $(cat "$T/out" "$T/err" | head -c 400)"; fail=1
  else
    echo "ok   $name"
  fi
}

# a small dataset: an 8x8x8 grid, energy and angle varying
"$CG" simulate --geometry custom --grid 8,8,8 --events 600 --energy 10:100 --theta 70:90 --seed 3 \
  -o "$T/data.cvox" >/dev/null || { echo "FAIL simulate"; exit 1; }
SMALL="--set channels=4 --set hidden=32 --set latent=4 --set kl_warmup=20 --set latent_bank=64 --threads 1"

# 1. uninterrupted reference run
"$CG" train --data "$T/data.cvox" --out "$T/a" --epochs 4 --batch 16 --seed 5 $SMALL >/dev/null 2>&1 \
  || { echo "FAIL uninterrupted run"; fail=1; }
# 2. the same run, interrupted by SIGINT once a few steps are logged, then resumed
"$CG" train --data "$T/data.cvox" --out "$T/b" --epochs 4 --batch 16 --seed 5 $SMALL >/dev/null 2>"$T/b.err" &
pid=$!
for _ in $(seq 1 600); do
  n=0; [ -f "$T/b/log.csv" ] && n=$(wc -l <"$T/b/log.csv")
  [ "$n" -ge 12 ] && break
  sleep 0.05
done
kill -INT "$pid"; wait "$pid"; rc=$?
if [ "$rc" = 130 ] && grep -q "interrupted at step" "$T/b.err" && [ -f "$T/b/model.ckpt" ]; then
  echo "ok   sigint saves a checkpoint and exits 130"
else
  echo "FAIL sigint: rc $rc, $(cat "$T/b.err")"; fail=1
fi
"$CG" train --out "$T/b" --resume >/dev/null 2>&1 || { echo "FAIL resume"; fail=1; }
if cmp -s <(cut -d, -f1-8 "$T/a/log.csv") <(cut -d, -f1-8 "$T/b/log.csv"); then
  echo "ok   resumed losses equal the uninterrupted run's ($(($(wc -l <"$T/a/log.csv") - 1)) steps)"
else
  echo "FAIL resumed losses differ:"; diff <(cut -d, -f1-8 "$T/a/log.csv") <(cut -d, -f1-8 "$T/b/log.csv") | head -5; fail=1
fi

# 3. NaN: a learning rate that blows the weights up
check "nan loss stops with the step and checkpoint" 1 "the loss became" -- \
  "$CG" train --data "$T/data.cvox" --out "$T/n" --epochs 2 --batch 16 --lr 1e30 $SMALL

# 4. bad input: exit 2 and one message
check "unknown flag" 2 "unknown option '--epoch'" -- "$CG" train --data "$T/data.cvox" --out "$T/x" --epoch 3
check "missing data file" 2 "cannot open" -- "$CG" train --data "$T/none.cvox" --out "$T/x"
printf 'not a cvox file at all' >"$T/junk.cvox"
check "not a .cvox file" 2 "junk.cvox" -- "$CG" train --data "$T/junk.cvox" --out "$T/x"
check "typo in a config file" 2 "unknown option 'laten'" -- sh -c "printf 'laten = 3\n' > '$T/c.cfg' && '$CG' train --data '$T/data.cvox' --out '$T/x' --config '$T/c.cfg'"
check "math mode on the cpu" 2 "needs device cuda" -- "$CG" train --data "$T/data.cvox" --out "$T/x" --math tf32
check "generate: math mode on the cpu" 2 "needs device cuda" -- "$CG" generate --checkpoint "$T/a/model.ckpt" --events 5 -o "$T/g.cvox" --math decoder:bf16
check "bad value" 2 "is not an integer" -- "$CG" train --data "$T/data.cvox" --out "$T/x" --set latent=many
"$CG" simulate --geometry custom --grid 6,8,8 --events 50 --seed 3 -o "$T/other.cvox" >/dev/null
check "resume with another data file" 2 "'data' was" -- "$CG" train --data "$T/other.cvox" --out "$T/a" --resume
cp "$T/data.cvox" "$T/keep.cvox" && cp "$T/other.cvox" "$T/data.cvox"
check "resume on changed data" 2 "does not hold the data" -- "$CG" train --out "$T/a" --resume
cp "$T/keep.cvox" "$T/data.cvox"
check "generate: missing checkpoint" 2 "cannot open" -- "$CG" generate --checkpoint "$T/none.ckpt" --events 5 -o "$T/g.cvox"
cp "$T/a/model.ckpt" "$T/bad.ckpt" && printf '\x01' | dd of="$T/bad.ckpt" bs=1 seek=2000 conv=notrunc 2>/dev/null
check "generate: corrupted checkpoint" 2 "corrupted" -- "$CG" generate --checkpoint "$T/bad.ckpt" --events 5 -o "$T/g.cvox"
check "generate: unknown condition" 2 "--cond" -- "$CG" generate --checkpoint "$T/a/model.ckpt" --events 5 -o "$T/g.cvox" --cond px
check "generate: a condition the model lacks" 2 "'phi'" -- "$CG" generate --checkpoint "$T/a/model.ckpt" --events 5 -o "$T/g.cvox" --phi 10
[ -e "$T/g.cvox" ] && { echo "FAIL a failed generate left $T/g.cvox"; fail=1; }
check "generate: works" 0 "generated 40 showers" -- "$CG" generate --checkpoint "$T/a/model.ckpt" --events 40 -o "$T/g.cvox" --energy 50
exit $fail
