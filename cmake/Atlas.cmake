# Helpers shared by every module's CMakeLists.txt.

# atlas_unit_test(NAME SOURCES src... LIBS lib...)
# A cmocka test executable registered with ctest under the label "unit".
function(atlas_unit_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES LABELS unit TIMEOUT 120)
endfunction()

# atlas_integration_test(NAME SOURCES src... LIBS lib... [TIMEOUT s])
# Integration tests run real processes from build/bin and may need the
# PostgreSQL cluster named by the PG* environment (./test.sh starts one).
function(atlas_integration_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} atlas_testsupport PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES LABELS integration
                       TIMEOUT ${T_TIMEOUT}
                       ENVIRONMENT "ATLAS_BIN=${CMAKE_BINARY_DIR}/bin;ATLAS_SRC=${CMAKE_SOURCE_DIR}")
endfunction()

# atlas_fuzz_target(NAME SOURCES src... LIBS lib...)
# Built only with ATLAS_FUZZ=ON (clang, -fsanitize=fuzzer).
function(atlas_fuzz_target name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  if(ATLAS_FUZZ)
    add_executable(${name} ${T_SOURCES})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE ${T_LIBS})
  endif()
endfunction()
