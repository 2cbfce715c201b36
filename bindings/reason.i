/* The one SWIG interface of libreason's bindings (Java, C#, Go). It wraps the thin C++ layer in
 * common/reason_binding.h, which calls only the C ABI (capi/include/reason.h): status/result
 * structs instead of exceptions, handle classes with close(), and three directors so that
 * host-language objects can be callbacks (TokenHandler, RewardFunction, ToolFunction). Each language's
 * idiomatic layer (java/, csharp/, go/) is written on top of what SWIG generates from this file;
 * the per-language .i files %include it and add only language typemaps. */
%module(directors="1") reason_native

%{
#include "reason_binding.h"
%}

%include <stdint.i>
%include <std_string.i>
%include <std_vector.i>

%feature("director") reason_binding::TokenHandler;
%feature("director") reason_binding::RewardFunction;
%feature("director") reason_binding::ToolFunction;

namespace std {
%template(IntVector) vector<int32_t>;
%template(FloatVector) vector<float>;
%template(ByteVector) vector<uint8_t>;
%template(StringVector) vector<string>;
%template(IntVectorVector) vector<vector<int32_t> >;
%template(ByteVectorVector) vector<vector<uint8_t> >;
}

/* Internals of the handle classes that no language needs. */
%ignore reason_binding::Tokenizer::borrow;
%ignore reason_binding::Tokenizer::raw;
%ignore reason_binding::Model::raw;
%ignore reason_binding::Status::ok;

%include "reason_binding.h"

namespace std {
%template(CompletionVector) vector<reason_binding::Completion>;
%template(GrpoSampleVector) vector<reason_binding::GrpoSample>;
%template(RewardFunctionVector) vector<reason_binding::RewardFunction*>;
%template(ToolFunctionVector) vector<reason_binding::ToolFunction*>;
}
