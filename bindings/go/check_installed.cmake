# binding_go_installed: installs the `go` component into a scratch prefix (as
# golang-libreason-dev lays it out under /usr/share/gocode) and builds the Go example against
# that copy only, in the two ways a user can: module mode with a replace directive, and GOPATH
# mode. cgo finds libreason through the build tree's reason.pc (standing in for libreason-dev).
# Arguments: BUILD_DIR, WORK, EXAMPLE (examples/go), GO, MODEL, and the go environment in GOENV
# (VAR=value items separated by |).
string(REPLACE "|" ";" GOENV "${GOENV}")
file(REMOVE_RECURSE ${WORK})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --component go --prefix ${WORK}/usr
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install --component go failed")
endif()
set(pkg ${WORK}/usr/share/gocode/src/libreason.org/go/reason)
foreach(f go.mod doc.go model.go version_gen.go internal/native/reason_native.go
          internal/native/reason_native_wrap.cxx internal/native/reason_binding.cpp internal/native/reason_binding.h)
  if(NOT EXISTS ${pkg}/${f})
    message(FATAL_ERROR "installed package lacks ${f}")
  endif()
endforeach()
file(GLOB_RECURSE tests ${pkg}/*_test.go)
if(tests OR EXISTS ${pkg}/internal/lsan)
  message(FATAL_ERROR "test files installed: ${tests}")
endif()

# Module mode: the example's own go.mod, its replace directive pointed at the installed copy.
file(MAKE_DIRECTORY ${WORK}/module)
file(COPY ${EXAMPLE}/main.go DESTINATION ${WORK}/module)
file(READ ${EXAMPLE}/go.mod gomod)
string(REPLACE "=> /usr/share/gocode" "=> ${WORK}/usr/share/gocode" gomod "${gomod}")
file(WRITE ${WORK}/module/go.mod "${gomod}")
execute_process(COMMAND ${CMAKE_COMMAND} -E env ${GOENV} ${GO} build -o reason-go .
                WORKING_DIRECTORY ${WORK}/module RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "module-mode build against the installed package failed")
endif()
# GOPATH mode: GOPATH=<prefix>/share/gocode, as Debian's Go packages are used.
file(MAKE_DIRECTORY ${WORK}/gopath-mode)
file(COPY ${EXAMPLE}/main.go DESTINATION ${WORK}/gopath-mode)
execute_process(COMMAND ${CMAKE_COMMAND} -E env ${GOENV} GO111MODULE=off GOFLAGS= GOPATH=${WORK}/usr/share/gocode
                        ${GO} build -o reason-go .
                WORKING_DIRECTORY ${WORK}/gopath-mode RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "GOPATH-mode build against the installed package failed")
endif()
foreach(mode module gopath-mode)
  execute_process(COMMAND ${WORK}/${mode}/reason-go score -model ${MODEL} "The answer is"
                  OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "total logprob")
    message(FATAL_ERROR "${mode} build: reason-go score failed (${rc}): ${out}")
  endif()
endforeach()
message("installed package builds in module mode (replace) and GOPATH mode")
file(REMOVE_RECURSE ${WORK})
