# Install rules of libreason-dev's consumer files, included from capi/CMakeLists.txt after the
# `reason` target: pkg-config (reason.pc) and the CMake package (find_package(Reason) ->
# imported target Reason::reason). Everything here is COMPONENT dev.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# reason.pc: paths relative to ${prefix} when GNUInstallDirs gives relative ones.
foreach(_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_dir}}")
    set(REASON_PC_${_dir} "${CMAKE_INSTALL_${_dir}}")
  else()
    set(REASON_PC_${_dir} "\${prefix}/${CMAKE_INSTALL_${_dir}}")
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/reason.pc.in ${PROJECT_BINARY_DIR}/packaging/reason.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/packaging/reason.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# CMake package: ReasonConfig.cmake, ReasonConfigVersion.cmake (same major = same SONAME is
# compatible), ReasonTargets*.cmake.
set(REASON_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Reason)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/ReasonConfig.cmake.in
  ${PROJECT_BINARY_DIR}/packaging/ReasonConfig.cmake
  INSTALL_DESTINATION ${REASON_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/packaging/ReasonConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(EXPORT ReasonTargets NAMESPACE Reason:: FILE ReasonTargets.cmake
  DESTINATION ${REASON_CMAKE_DIR} COMPONENT dev)
install(FILES ${PROJECT_BINARY_DIR}/packaging/ReasonConfig.cmake
              ${PROJECT_BINARY_DIR}/packaging/ReasonConfigVersion.cmake
  DESTINATION ${REASON_CMAKE_DIR} COMPONENT dev)
