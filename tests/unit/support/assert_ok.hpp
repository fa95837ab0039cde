#pragma once
/// \file
/// The one way a test checks a `vfe::Result` it cannot go on without: a failed setup ends the
/// test with a message, never the process with a crash, and no test reads a value that is not
/// there. Header-only; the host unit tests and the VM tests (tests/vm) include it alike.
///
///   VFE_ASSERT_OK_AND_ASSIGN(auto dev, vfio::Device::open(bdf, options));
///   VFE_ASSERT_OK(dev.reset()) << "after the FLR";
///
/// A helper that can fail returns a `Result` for the test to check this way, rather than
/// reporting a failure itself and returning a null or default object.

#include <gtest/gtest.h>

#include <utility>

#include "base/result.hpp"

namespace vfe::test {

/// Success when `r` holds a value; otherwise a failure reading "<expr_text> failed: <message>".
/// For ASSERT_PRED_FORMAT1 / EXPECT_PRED_FORMAT1 (VFE_ASSERT_OK).
template <class T>
::testing::AssertionResult result_is_ok(const char* expr_text, const Result<T>& r) {
  if (r) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << expr_text << " failed: " << r.error().message();
}

}  // namespace vfe::test

/// Evaluates `expr` (a `vfe::Result<T>`, any T, including void) once. On an Error: a fatal
/// failure naming the expression and carrying `error().message()`, then a return from the
/// enclosing function. More context can be streamed in: `VFE_ASSERT_OK(x) << "while ..."`.
/// Like ASSERT_*, usable only in a function returning void (a TEST body, SetUp, or a helper
/// whose caller wraps it in ASSERT_NO_FATAL_FAILURE).
#define VFE_ASSERT_OK(expr) ASSERT_PRED_FORMAT1(::vfe::test::result_is_ok, expr)

/// `VFE_ASSERT_OK_AND_ASSIGN(lhs, expr);` evaluates `expr` (a `vfe::Result<T>`) once. On an
/// Error: a fatal failure naming the expression and carrying `error().message()`, then a return
/// from the enclosing function, so nothing after it runs with a missing value. Otherwise moves
/// the value into `lhs`, which may declare a variable (`auto nic`, `const Topology topology`) or
/// name an existing one (`pool_`). Like ASSERT_*, usable only in a function returning void.
/// Expands to several statements: do not use it as the body of an unbraced if or loop.
#define VFE_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  VFE_ASSERT_OK_AND_ASSIGN_IMPL_(VFE_CONCAT_(vfe_assert_ok_r_, __LINE__), lhs, expr)
#define VFE_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr)               \
  auto tmp = (expr);                                                 \
  if (!tmp) {                                                        \
    FAIL() << ::vfe::test::result_is_ok(#expr, tmp).message();       \
  }                                                                  \
  lhs = std::move(tmp).value()
