/* Go: the one interface (../reason.i) plus what only Go needs. Generated with
 *   swig -go -cgo -c++ -intgosize 64 -package native reason_go.i
 * into the internal package libreason.org/go/reason/internal/native, which the idiomatic
 * package libreason.org/go/reason wraps (the generated names never reach users). cgo finds
 * libreason's headers and library through pkg-config (reason.pc from libreason-dev, or the
 * build tree's reason.pc for in-tree builds); the copies of reason_binding.{h,cpp} next to the
 * generated files are compiled by cgo with the wrapper. */

/* cgo flags, in the preamble of the generated file. Directors are C++ and the glue needs C++17. */
%insert(cgo_comment_typedefs) %{
#cgo pkg-config: reason
#cgo CXXFLAGS: -std=c++17
%}

/* Not %feature("compactdefaultargs"): with it, SWIG 4.1's Go wrapper of a `const std::string&`
 * parameter that has a default converts the Go string into a std::string declared inside the
 * `if (optargc > 0)` block and uses it after the block (stack-use-after-scope, found by the
 * binding_go_asan test in Model::load). Default arguments stay overloads, and the idiomatic
 * layer calls them through SWIG's dispatchers with every argument. */

%include "../reason.i"
