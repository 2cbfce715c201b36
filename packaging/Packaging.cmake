# Debian packages with CPack, one per install component (see packaging/README.md):
#   runtime -> libreason0            the library libreason.so.MAJOR.MINOR.PATCH (SONAME libreason.so.MAJOR)
#   dev     -> libreason-dev         headers, libreason.so link, reason.pc, CMake package Reason::reason
#   tools   -> reason-tools          /usr/bin/reason
#   java    -> libreason-java        libreason.jar + JNI glue          (REASON_BINDINGS=ON)
#   csharp  -> libreason-cil         LibReason.dll + P/Invoke glue     (REASON_BINDINGS=ON)
#   go      -> golang-libreason-dev  Go sources for cgo                (REASON_BINDINGS=ON)
# Build them with `cmake --build build --target package` or `cd build && cpack -G DEB`; the
# .deb files land in build/packages/. Included at the end of the top-level CMakeLists.txt.
include(GNUInstallDirs)

if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "Packaging: CMAKE_INSTALL_PREFIX is ${CMAKE_INSTALL_PREFIX}; the Debian packages "
                 "install there. Configure with -DCMAKE_INSTALL_PREFIX=/usr for Debian's layout.")
endif()

# Components -> package names (Debian policy: lowercase). Only components that have install
# rules in this configuration become packages (the bindings only with REASON_BINDINGS=ON).
set(_reason_pkg_runtime libreason${PROJECT_VERSION_MAJOR})
set(_reason_pkg_dev     libreason-dev)
set(_reason_pkg_tools   reason-tools)
set(_reason_pkg_java    libreason-java)
set(_reason_pkg_csharp  libreason-cil)
set(_reason_pkg_go      golang-libreason-dev)
get_cmake_property(_reason_install_components COMPONENTS)
set(CPACK_COMPONENTS_ALL "")
foreach(_c IN ITEMS runtime dev tools java csharp go)
  if(_c IN_LIST _reason_install_components)
    list(APPEND CPACK_COMPONENTS_ALL ${_c})
  endif()
endforeach()
foreach(_c IN LISTS _reason_install_components)
  if(NOT _c MATCHES "^(runtime|dev|tools|java|csharp|go)$")
    message(WARNING "Packaging: install component '${_c}' is in no Debian package; use one of "
                    "runtime, dev, tools, java, csharp, go (packaging/Packaging.cmake)")
  endif()
endforeach()

# ---- common fields ---------------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME libreason)
set(CPACK_PACKAGE_VENDOR "libreason")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "libreason maintainers <maintainers@libreason.org>")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://libreason.org")
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/packages)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)  # the library carries capi debug info for the ABI check; packages do not
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # NAME_VERSION-RELEASE_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)      # Debian revision; keep in step with packaging/changelog
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${CPACK_PACKAGE_HOMEPAGE_URL}")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# shlibs for libreason0: "libreason 0 libreason0 (>= 0.2.0)", so that packages built against it
# get the dependency from dpkg-shlibdeps.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# dpkg-shlibdeps finds libreason.so.0 (needed by the glue libraries) in the build tree; the
# explicit "libreason0 (= version)" below is what ties them to it.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/capi)
set(_reason_exact "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")
set(_reason_dep_lib "${_reason_pkg_runtime} (= ${_reason_exact})")

# ---- per package -----------------------------------------------------------------------------
set(_reason_long_desc
  " libreason runs and trains LLMs (Llama, Qwen2, Mixtral, Qwen MoE, DeepSeek-V3):\n"
  " generation with streaming, scoring, SFT, GRPO and distillation, and the\n"
  " DeepSeek-R1 training pipeline, behind a stable C ABI.")
string(CONCAT _reason_long_desc ${_reason_long_desc})

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${_reason_pkg_runtime})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "LLM inference and RL training engine - shared library\n${_reason_long_desc}\n .\n This package holds the shared library libreason.so.${PROJECT_VERSION_MAJOR}.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME ${_reason_pkg_dev})
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${_reason_dep_lib}")
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "pkg-config, cmake")
set(CPACK_DEBIAN_DEV_DESCRIPTION "LLM inference and RL training engine - development files\n${_reason_long_desc}\n .\n This package holds the C headers (reason.h), the libreason.so link, the\n pkg-config file (reason) and the CMake package (find_package(Reason),\n target Reason::reason).")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME ${_reason_pkg_tools})
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION science)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SHLIBDEPS ON)
# The CLI links the engine statically (it is the C++ sdk, not the C ABI), so it needs only
# what dpkg-shlibdeps finds (oneDNN, protobuf, ...), not libreason0.
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "LLM inference and RL training engine - command-line tool\n${_reason_long_desc}\n .\n This package holds the reason command: generate, score, train, run and\n evaluate R1 pipelines.")

set(CPACK_DEBIAN_JAVA_PACKAGE_NAME ${_reason_pkg_java})
set(CPACK_DEBIAN_JAVA_PACKAGE_SECTION java)
set(CPACK_DEBIAN_JAVA_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_JAVA_PACKAGE_DEPENDS "${_reason_dep_lib}, default-jre-headless | java11-runtime-headless | java-runtime-headless")
set(CPACK_DEBIAN_JAVA_DESCRIPTION "LLM inference and RL training engine - Java binding\n${_reason_long_desc}\n .\n This package holds /usr/share/java/libreason.jar (package org.libreason)\n and its JNI glue library libreason_java.so.")

set(CPACK_DEBIAN_CSHARP_PACKAGE_NAME ${_reason_pkg_csharp})
set(CPACK_DEBIAN_CSHARP_PACKAGE_SECTION cli-mono)
set(CPACK_DEBIAN_CSHARP_PACKAGE_SHLIBDEPS ON)
# mono-runtime plus the class library LibReason.dll references (mscorlib only).
set(CPACK_DEBIAN_CSHARP_PACKAGE_DEPENDS "${_reason_dep_lib}, mono-runtime, libmono-corlib4.5-cil")
set(CPACK_DEBIAN_CSHARP_DESCRIPTION "LLM inference and RL training engine - CLI (C#) binding\n${_reason_long_desc}\n .\n This package holds the assembly LibReason.dll (namespace LibReason) and\n its P/Invoke glue library libreason_csharp.so in /usr/lib/cli/libreason.")

set(CPACK_DEBIAN_GO_PACKAGE_NAME ${_reason_pkg_go})
set(CPACK_DEBIAN_GO_PACKAGE_SECTION golang)
set(CPACK_DEBIAN_GO_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_GO_PACKAGE_SHLIBDEPS OFF)
# cgo compiles the package's C++ glue and finds libreason through pkg-config (libreason-dev).
set(CPACK_DEBIAN_GO_PACKAGE_DEPENDS "${_reason_dep_lib}, ${_reason_pkg_dev} (= ${_reason_exact}), golang-go, g++, pkg-config")
set(CPACK_DEBIAN_GO_DESCRIPTION "LLM inference and RL training engine - Go binding\n${_reason_long_desc}\n .\n This package holds the Go package libreason.org/go/reason (cgo) under\n /usr/share/gocode/src.")

# ---- /usr/share/doc/<package>/{copyright,changelog.Debian.gz} ---------------------------------
set(_reason_changelog_gz ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz)
file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/packaging)
execute_process(COMMAND gzip -9 -n -c ${CMAKE_CURRENT_LIST_DIR}/changelog
  OUTPUT_FILE ${_reason_changelog_gz} RESULT_VARIABLE _reason_gzip_rc)
if(NOT _reason_gzip_rc EQUAL 0)
  message(FATAL_ERROR "Packaging: gzip of packaging/changelog failed")
endif()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/changelog)
file(STRINGS ${CMAKE_CURRENT_LIST_DIR}/changelog _reason_changelog_top LIMIT_COUNT 1)
if(NOT _reason_changelog_top MATCHES "^libreason \\(${_reason_exact}\\) ")
  message(WARNING "Packaging: packaging/changelog's first entry is not version ${_reason_exact} "
                  "(project version ${PROJECT_VERSION}, Debian revision ${CPACK_DEBIAN_PACKAGE_RELEASE}); add an entry")
endif()
foreach(_c IN LISTS CPACK_COMPONENTS_ALL)
  install(FILES ${CMAKE_CURRENT_LIST_DIR}/copyright ${_reason_changelog_gz}
    DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${_reason_pkg_${_c}} COMPONENT ${_c})
endforeach()

include(CPack)
