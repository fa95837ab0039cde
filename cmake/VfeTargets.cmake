# Compile settings every vfio-engine target shares, kept off the exported targets so that a
# consumer's build never inherits our warning policy or sanitizers.

add_library(vfe_build_flags INTERFACE)
target_compile_options(vfe_build_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
  -Woverloaded-virtual -Wimplicit-fallthrough -Wformat=2
  $<$<BOOL:${VFE_WERROR}>:-Werror>)

if(VFE_SANITIZE)
  # -fno-sanitize-recover makes UBSan findings fail the test instead of scrolling past.
  add_compile_options(-fsanitize=${VFE_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${VFE_SANITIZE})
endif()

# VFE_FUZZ: every library gets libFuzzer's coverage instrumentation and ASan+UBSan, so what a fuzz
# target finds in them is reported; only tests/fuzz links libFuzzer itself (-fsanitize=fuzzer).
# (The fuzz preset builds with -O1 -g and without -DNDEBUG, so Result's asserts stay on.)
if(VFE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "VFE_FUZZ needs clang (libFuzzer): use the fuzz preset, or "
                        "-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(VFE_SANITIZE)
    message(FATAL_ERROR "VFE_FUZZ brings its own sanitizers (address,undefined); leave VFE_SANITIZE empty")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
  # Where clang 14 differs from g++ 12 on code that is fine: it needs asking for C++14 sized
  # deallocation (engine/spsc_ring.hpp calls it), and -Wpedantic makes it flag the VFIO uapi
  # structs whose last member is a zero-length array when vfio/ value-initialises one.
  add_compile_options(-fsized-deallocation)
  target_compile_options(vfe_build_flags INTERFACE -Wno-zero-length-array)
endif()

# vfe_add_library(NAME SOURCES...): one static library per folder, headers beside the sources,
# included from the repository root ("base/result.hpp").
function(vfe_add_library name)
  add_library(${name} STATIC ${ARGN})
  add_library(vfe::${name} ALIAS ${name})
  target_include_directories(${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/vfe>)
  target_compile_features(${name} PUBLIC cxx_std_20)
  target_link_libraries(${name} PRIVATE $<BUILD_INTERFACE:vfe_build_flags>)
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
