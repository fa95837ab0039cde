#!/bin/sh
# In the guest: vfe-nvme's reports of the rig's first NVMe, checked against what QEMU 7.2's
# controller is known to say (docs/TEST-RIG.md): Identify, the health, firmware slot and error
# logs, features, any log and any CNS as raw bytes, in text and JSON; and its refusals.
bdf=$(echo "$VFE_VM_DEVICES" | tr ' ' '\n' | sed -n 's/^nvme=//p' | head -n 1)
[ -n "$bdf" ] || { echo "nvme_tool_check: no NVMe in VFE_VM_DEVICES" >&2; exit 1; }
out=/tmp/vfe-nvme.out
fail() { echo "nvme_tool_check: FAIL: $*" >&2; sed 's/^/  | /' "$out" >&2; exit 1; }
# expect "WHAT" ARGS... : vfe-nvme ARGS succeeds and its output has every line of $want.
expect() {
  what=$1; shift
  vfe-nvme "$@" > "$out" 2>&1 || fail "$what: vfe-nvme $* exited $?"
  echo "$want" | while IFS= read -r line; do
    grep -qF -- "$line" "$out" || { echo "missing: $line" >&2; exit 1; }
  done || fail "$what"
  echo "nvme_tool_check: ok: $what"
}

want='"sn": "vfe-nvme-0",
"mdts": 7,
"oncs": 349,
"dmrsl": 4194303'
expect "id-ctrl --json (ONCS 15Dh, NVM limits from CNS 06h)" id-ctrl "$bdf" --json
want='sn                          : vfe-nvme-0'
expect "id-ctrl as text" id-ctrl "$bdf"
want='"nsze": 131072,
"block_size": 512,'
expect "id-ns -n 1 (64 MiB of 512-byte blocks)" id-ns "$bdf" -n 1 -o json
want='"dps": 11,
"flbas": 2,'
expect "id-ns -n 7 (16 bytes of separate metadata, type 3 first: DPS 0Bh)" id-ns "$bdf" -n 7 -o json
want='"temperature": 323,
"critical_warning": 0,'
expect "smart-log (QEMU: 323 K)" smart-log "$bdf" --json
want='"frs1": "1.0"'
expect "fw-log" fw-log "$bdf" --json
want='"errors": []'
expect "error-log (QEMU keeps none)" error-log "$bdf" --json
want='"value": 343,'
expect "get-feature 04h (over-temperature threshold 343 K)" get-feature "$bdf" -f 0x04 --json
want='"changeable": true'
expect "get-feature 04h -s 3 (capabilities)" get-feature "$bdf" -f 4 -s 3 --json
want='"data": "'
expect "get-feature 0Eh -l 8 (Timestamp, with data)" get-feature "$bdf" -f 0x0e -l 8 --json
want='0000: 00430100'
expect "get-log 02h raw (warning 0, temperature 0143h)" get-log "$bdf" -i 2 -l 512
want='"bytes": 4096'
expect "id --cns 1 raw" id "$bdf" --cns 1 --json

vfe-nvme id "$bdf" --cns 0xff > "$out" 2>&1 && fail "CNS FFh was answered"
grep -q "Invalid Field" "$out" || fail "CNS FFh: the error does not name the status"
vfe-nvme get-log "$bdf" -i 2 -l 6 > "$out" 2>&1 && fail "a 6-byte log was read"
grep -q "multiples of 4" "$out" || fail "a 6-byte log: the error does not say why"
vfe-nvme id-ctrl 00:1f.6 > "$out" 2>&1 && fail "a function that does not exist was opened"
echo "nvme_tool_check: ok: refusals"
