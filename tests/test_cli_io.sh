#!/usr/bin/env bash
# tests/test_cli_io.sh — every bad input to `calograd simulate|info|import|export` exits
# with code 2 and one message naming the file and the problem, and leaves no output file
# (and no partial file) behind: unknown flags, bad values, truncated files, flipped bytes,
# wrong magic or version, misshaped HDF5, a directory that does not exist, a device as the
# output, and a full disk (a 256 kB tmpfs when this runs as root and may mount, otherwise a
# file size limit, which makes write() fail the same way).
#
# usage: test_cli_io.sh CALOGRAD HAVE_HDF5(0|1) CLIC_DIR   (CG_TEST_NO_MOUNT=1: no tmpfs)
set -u
CG=$1
HAVE_HDF5=$2
CLIC=$3
T=$(mktemp -d "${TMPDIR:-/tmp}/cg_test_cli_io.XXXXXX")
MNT=""
fails=0
cleanup() {
  if [ -n "$MNT" ]; then umount "$MNT" 2>/dev/null; fi
  rm -rf "$T"
}
trap cleanup EXIT

# expect CODE TEXT -- command...: the exit code, a substring of stderr, no partial files
expect() {
  local code=$1 text=$2
  shift 3
  local err rc
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  local partial
  partial=$(find "$T" -name '*.partial.*' 2>/dev/null | head -1)
  if [ "$rc" != "$code" ] || [[ "$err" != *"$text"* ]] || [ -n "$partial" ]; then
    echo "FAIL: $* -> exit $rc (want $code), stderr: $err (want '$text')${partial:+, left $partial}"
    fails=$((fails + 1))
  else
    echo "ok   exit $rc: ${err:0:150}"
  fi
}
absent() {
  if [ -e "$1" ]; then echo "FAIL: $1 was left behind"; fails=$((fails + 1)); fi
}

# a good file to break
"$CG" simulate --events 1000 --seed 3 -o "$T/good.cvox" >/dev/null || { echo "FAIL: simulate"; exit 1; }
size=$(stat -c %s "$T/good.cvox")

echo "-- simulate"
expect 2 "unknown option '--bogus'" -- "$CG" simulate --bogus -o "$T/x.cvox"
expect 2 "--geometry" -- "$CG" simulate --geometry atlas -o "$T/x.cvox"
expect 2 "--energy 0.1:1" -- "$CG" simulate --energy 0.1:1 -o "$T/x.cvox"
expect 2 "--events" -- "$CG" simulate --events -5 -o "$T/x.cvox"
expect 2 "missing required option -o" -- "$CG" simulate --events 5
expect 2 "$T/nodir/x.cvox" -- "$CG" simulate --events 5 -o "$T/nodir/x.cvox"
expect 2 "not a regular file" -- "$CG" simulate --events 5 -o /dev/full
expect 2 "custom geometry" -- "$CG" simulate --geometry custom --grid 0,4,4 -o "$T/x.cvox"
absent "$T/x.cvox"

echo "-- info"
head -c $((size / 2)) "$T/good.cvox" >"$T/half.cvox"
expect 2 "half.cvox: incomplete or truncated" -- "$CG" info "$T/half.cvox"
head -c 100 "$T/good.cvox" >"$T/head.cvox"
expect 2 "head.cvox: truncated inside the header" -- "$CG" info "$T/head.cvox"
cp "$T/good.cvox" "$T/flip.cvox"
printf '\x5a' | dd of="$T/flip.cvox" bs=1 seek=$((size / 3)) conv=notrunc status=none
expect 2 "flip.cvox: chunk" -- "$CG" info "$T/flip.cvox"
cp "$T/good.cvox" "$T/magic.cvox"
printf 'Q' | dd of="$T/magic.cvox" bs=1 seek=1 conv=notrunc status=none
expect 2 "magic.cvox: not a .cvox file (wrong magic" -- "$CG" info "$T/magic.cvox"
cp "$T/good.cvox" "$T/version.cvox"
printf '\x09' | dd of="$T/version.cvox" bs=1 seek=8 conv=notrunc status=none
expect 2 "version.cvox: .cvox version 9.0 is not supported" -- "$CG" info "$T/version.cvox"
echo "just text" >"$T/text.cvox"
expect 2 "text.cvox: not a .cvox file" -- "$CG" info "$T/text.cvox"
expect 2 "missing.cvox: cannot open" -- "$CG" info "$T/missing.cvox"
expect 2 "--event 1000: the file has 1000 events" -- "$CG" info "$T/good.cvox" --event 1000
expect 2 "give one .cvox file" -- "$CG" info
# an unfinished file is readable up to its last complete chunk with --salvage
if "$CG" info --salvage --header "$T/half.cvox" | grep -Eq "^events +(256 in 1|512 in 2) chunks"; then
  echo "ok   --salvage reads the complete chunk of a half file"
else
  echo "FAIL: info --salvage"; fails=$((fails + 1))
fi

# a full disk: a small tmpfs if possible, else a file size limit
full_disk() { # full_disk NAME command... (the output goes to $FULL/NAME)
  local name=$1
  shift
  if [ -n "$MNT" ]; then
    expect 2 "disk full" -- "$@"
    absent "$MNT/$name"
    if [ -n "$(ls -A "$MNT")" ]; then echo "FAIL: files left on the full disk: $(ls "$MNT")"; fails=$((fails + 1)); fi
  else
    expect 2 "disk full" -- bash -c 'ulimit -f 256; exec "$@"' _ "$@"
    absent "$T/$name"
  fi
}
if [ "${CG_TEST_NO_MOUNT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && mkdir -p "$T/mnt" && mount -t tmpfs -o size=256k tmpfs "$T/mnt" 2>/dev/null; then
  MNT="$T/mnt"
  FULL=$MNT
  echo "-- full disk: a 256 kB tmpfs"
else
  FULL=$T
  echo "-- full disk: a file size limit of 256 kB (cannot mount a tmpfs here)"
fi
full_disk sim.cvox "$CG" simulate --events 3000 -o "$FULL/sim.cvox"

if [ "$HAVE_HDF5" = 1 ]; then
  echo "-- import / export"
  expect 2 "text.cvox: not an HDF5 file" -- "$CG" import "$T/text.cvox" -o "$T/x.cvox"
  expect 2 "nothing.h5: cannot open" -- "$CG" import "$T/nothing.h5" -o "$T/x.cvox"
  expect 2 "--format" -- "$CG" import "$T/text.cvox" --format hdf9 -o "$T/x.cvox"
  expect 2 "give at least one HDF5 file" -- "$CG" import -o "$T/x.cvox"
  "$CG" export "$T/good.cvox" --format calochallenge -o "$T/good.h5" >/dev/null || { echo "FAIL: export"; fails=$((fails + 1)); }
  expect 2 "good.h5: dataset 'ECAL' is missing (clic layout)" -- "$CG" import "$T/good.h5" --format clic -o "$T/x.cvox"
  hsize=$(stat -c %s "$T/good.h5")
  head -c $((hsize / 2)) "$T/good.h5" >"$T/half.h5"
  expect 2 "half.h5" -- "$CG" import "$T/half.h5" -o "$T/x.cvox"
  if [ -f "$CLIC/test_data_1.h5" ]; then
    expect 2 "test_data_1.h5: dataset 'showers' is missing (calochallenge layout)" -- \
      "$CG" import "$CLIC/test_data_1.h5" --format calochallenge -o "$T/x.cvox"
    expect 2 "good.h5: dataset 'ECAL' is missing (clic layout)" -- \
      "$CG" import "$CLIC/test_data_1.h5" "$T/good.h5" --format auto -o "$T/x.cvox"
  fi
  absent "$T/x.cvox"
  expect 2 "missing.cvox: cannot open" -- "$CG" export "$T/missing.cvox" --format ild -o "$T/x.h5"
  expect 2 "missing required option --format" -- "$CG" export "$T/good.cvox" -o "$T/x.h5"
  expect 2 "$T/nodir/x.h5: cannot create" -- "$CG" export "$T/good.cvox" --format ild -o "$T/nodir/x.h5"
  expect 2 "not a regular file" -- "$CG" export "$T/good.cvox" --format ild -o /dev/full
  expect 2 "half.cvox: incomplete" -- "$CG" export "$T/half.cvox" --format ild -o "$T/x.h5"
  absent "$T/x.h5"
  "$CG" simulate --events 2000 -o "$T/big.cvox" >/dev/null
  full_disk big.h5 "$CG" export "$T/big.cvox" --format calochallenge --gzip 1 -o "$FULL/big.h5"
  "$CG" export "$T/big.cvox" --format calochallenge -o "$T/big.h5" >/dev/null
  full_disk big2.cvox "$CG" import "$T/big.h5" -o "$FULL/big2.cvox"
fi

if [ "$fails" -gt 0 ]; then
  echo "$fails failed"
  exit 1
fi
echo "all passed"
