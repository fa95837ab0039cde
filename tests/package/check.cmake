# Installs the build in BUILD_DIR to a scratch prefix, then builds the consumer project against
# it twice: through find_package(vfe CONFIG) and through pkg-config. Any failure fails the test.
set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# Nothing in the libraries uses TBB, so nothing installed may make a consumer find or link it
# (only the ring micro benchmark, which is not installed, links TBB).
file(GLOB_RECURSE package_files ${prefix}/lib*/cmake/vfe/*.cmake ${prefix}/lib*/pkgconfig/vfe.pc)
if(NOT package_files)
  message(FATAL_ERROR "no vfe package files (CMake config, vfe.pc) under ${prefix}")
endif()
foreach(f IN LISTS package_files)
  file(READ ${f} text)
  string(TOLOWER "${text}" text)
  if(text MATCHES "tbb")
    message(FATAL_ERROR "${f} mentions TBB: library users would need it for nothing")
  endif()
endforeach()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/consumer -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer_cmake 0000:81:00.0)
run(${WORK_DIR}/build/consumer_pkgconfig 81:00.0)
message(STATUS "find_package(vfe CONFIG) and pkg-config vfe both build and run")
