#!/bin/sh
# In the guest: the 60-second soak (tests/vm/soak_test.cpp): both NVMe controllers at queue depth
# 128 in adaptive mode, verified data in the scratch band, and the two e1000e exchanging frames.
# run_suite.sh runs it in iommufd mode only (a minute per mode would stretch CI); in the ordinary
# run of vfe_vm_tests, Soak.* skips.
export VFE_VM_SOAK_SECONDS=60
exec /opt/vfe/bin/vfe_vm_tests --gtest_filter='Soak.*'
