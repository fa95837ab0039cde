#!/bin/sh
# Last in the boot: the node-1 NVMe is removed during I/O (tests/vm/hotunplug_test.cpp asks the
# host for the device_del) and is gone for the rest of the boot.
export VFE_VM_HOTUNPLUG=1
exec /opt/vfe/bin/vfe_vm_tests --gtest_filter='HotUnplug.*'
