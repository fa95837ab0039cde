# Installation: static libraries, headers under include/vfe (so "base/result.hpp" resolves the
# same way as in the tree), a CMake package (find_package(vfe CONFIG) -> vfe::vfe) and vfe.pc.
include(CMakePackageConfigHelpers)

install(TARGETS ${VFE_INSTALLED_LIBS} vfe EXPORT vfeTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vfe)
foreach(dir base vfio mmio dma irq engine drivers frontends)
  if(IS_DIRECTORY ${PROJECT_SOURCE_DIR}/${dir})
    install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vfe/${dir}
            FILES_MATCHING PATTERN "*.hpp")
  endif()
endforeach()

set(vfe_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/vfe)
install(EXPORT vfeTargets NAMESPACE vfe:: DESTINATION ${vfe_cmake_dir})
configure_package_config_file(cmake/vfeConfig.cmake.in ${PROJECT_BINARY_DIR}/vfeConfig.cmake
                              INSTALL_DESTINATION ${vfe_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vfeConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/vfeConfig.cmake ${PROJECT_BINARY_DIR}/vfeConfigVersion.cmake
        DESTINATION ${vfe_cmake_dir})

# pkg-config: libraries in dependency order, most dependent first. They are static, so what
# they link (fmt, hwloc, liburing) goes in Requires, not Requires.private.
set(vfe_pc_libs "")
foreach(lib IN LISTS VFE_INSTALLED_LIBS)
  string(PREPEND vfe_pc_libs "-l${lib} ")
endforeach()
# Relocatable: the prefix is found from the .pc file's own folder, so `cmake --install --prefix`
# anywhere gives a working file.
file(RELATIVE_PATH vfe_pc_to_prefix /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
configure_file(cmake/vfe.pc.in ${PROJECT_BINARY_DIR}/vfe.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/vfe.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
