# The host smoke test of `vfio-bench loopback` (no timing assertion): runs it briefly with --json
# and checks the document: three jobs, no errors, operations done, the comparison present.
# usage: cmake -DBENCH=path/to/vfio-bench -DOUT=file.json -P check_loopback.cmake
execute_process(COMMAND ${BENCH} loopback --time 0.4 --json --output ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "vfio-bench loopback exited with ${rc}")
endif()
file(READ ${OUT} doc)
string(JSON errors GET "${doc}" errors)
string(JSON jobs LENGTH "${doc}" jobs)
string(JSON ops GET "${doc}" jobs 2 ops)
string(JSON count GET "${doc}" jobs 2 latency count)
string(JSON ratio GET "${doc}" comparison ratio_to_nop_batch32)
if(NOT errors EQUAL 0 OR NOT jobs EQUAL 3 OR ops LESS 1000 OR count LESS 1)
  message(FATAL_ERROR "unexpected loopback report: errors=${errors} jobs=${jobs} ops=${ops} timed=${count}")
endif()
message(STATUS "loopback: ${ops} I/Os, ${ratio}x io_uring NOP at batch 32 (no assertion on timing)")
