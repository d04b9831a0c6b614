# Helpers shared by every module's CMakeLists.txt.

# atlas_library(NAME SOURCES src... [LIBS lib...] [INCLUDE dir])
# A module's static library. Its folder (or INCLUDE) is its public include directory, and what
# it links it passes on (docs/ARCHITECTURE.md, "Build").
function(atlas_library name)
  cmake_parse_arguments(L "" "INCLUDE" "SOURCES;LIBS" ${ARGN})
  if(NOT L_INCLUDE)
    set(L_INCLUDE ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  add_library(${name} STATIC ${L_SOURCES})
  target_include_directories(${name} PUBLIC ${L_INCLUDE})
  target_link_libraries(${name} PUBLIC ${L_LIBS})
endfunction()

# atlas_program(NAME [DAEMON] SOURCES src... LIBS lib...)
# A program operators run, built into build/bin and installed (cmake --install, the .deb):
# a DAEMON, run by systemd as user atlas rather than by hand, to sbin as Debian puts its daemons
# (/usr/sbin/sshd), every other program to bin (docs/deploy.md). Tests, fuzzers and benchmarks
# are not atlas_programs and are not installed.
function(atlas_program name)
  cmake_parse_arguments(P "DAEMON" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${P_SOURCES})
  target_link_libraries(${name} PRIVATE ${P_LIBS})
  if(P_DAEMON)
    install(TARGETS ${name} RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
  else()
    install(TARGETS ${name} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endfunction()

# ./test.sh runs ctest with several tests at once (ctest -j, docs/testing.md "Running in
# parallel"). ctest starts the tests with the highest COST first; in a fresh build tree (CI) it
# has no times of its own yet (Testing/Temporary/CTestCostData.txt), so the slowest tests are
# named here with their seconds in a serial normal-build run: started first, they no longer end
# the run alone. Tests not listed cost 0 (a few seconds at most). Refresh with
# `ctest -j1 --timing` when a test's time changes a lot.
set(ATLAS_TEST_COSTS
    test_chaos=100 test_keyx=43 test_reconcile_stack=40 test_pg_failover=21 test_db_journal=20
    test_switch_money=19 test_stream=17 test_switch_hostile=16 test_switch_stip=16
    test_package=15 test_ha=14 test_switch_tls=13 test_load_stack=13 test_switch_flow=11
    test_transfers=9 test_switch_advice=8 test_settle_stack=8 test_switch_fx=7 test_switch_chip=5
    test_switch_preauth=5)
# The tests that keep the whole stack busy for long (acquirer-sim loads of several seconds, the
# chaos scenarios, 30,000-40,000-row journal loads) count as 2 of ctest's -j slots (PROCESSORS):
# with ./test.sh's -j5 at most two of them run at once, next to one lighter test. Three or four
# at once under ASan on a busy 2-core machine starved the daemons into issuer timeouts (91) where
# a test allows none.
set(ATLAS_TEST_HEAVY test_chaos test_keyx test_reconcile_stack test_pg_failover test_db_journal
    test_load_stack)
function(atlas_test_cost_ name)
  foreach(entry ${ATLAS_TEST_COSTS})
    if(entry MATCHES "^${name}=([0-9]+)$")
      set_tests_properties(${name} PROPERTIES COST ${CMAKE_MATCH_1})
    endif()
  endforeach()
  if(name IN_LIST ATLAS_TEST_HEAVY)
    set_tests_properties(${name} PROPERTIES PROCESSORS 2)
  endif()
endfunction()

# What every test shares: an executable linked with cmocka, run by ctest from the source tree
# under LABEL (unit or integration) and a timeout (TIMEOUT, else default_timeout); its source is
# tests/LABEL/NAME.c unless SOURCES says otherwise. Integration tests run real processes from
# build/bin (tests/support) and may need the PostgreSQL cluster named by the PG* environment
# (./test.sh starts one).
function(atlas_test_ name label default_timeout)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT ${default_timeout})
  endif()
  if(NOT T_SOURCES)
    set(T_SOURCES ${CMAKE_SOURCE_DIR}/tests/${label}/${name}.c)
  endif()
  if(label STREQUAL integration)
    list(APPEND T_LIBS atlas_testsupport)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES LABELS ${label} TIMEOUT ${T_TIMEOUT})
  atlas_test_cost_(${name})
  if(label STREQUAL integration)
    set_tests_properties(${name} PROPERTIES
                         ENVIRONMENT "ATLAS_BIN=${CMAKE_BINARY_DIR}/bin;ATLAS_SRC=${CMAKE_SOURCE_DIR}")
  endif()
endfunction()

# atlas_unit_test(NAME [SOURCES src...] LIBS lib...)
# A cmocka test of a module's library (120 s at most).
function(atlas_unit_test name)
  atlas_test_(${name} unit 120 ${ARGN})
endfunction()

# atlas_integration_test(NAME [SOURCES src...] LIBS lib... [TIMEOUT s])
# A test of the real programs (300 s unless TIMEOUT), with tests/support and ATLAS_BIN and
# ATLAS_SRC in its environment.
function(atlas_integration_test name)
  atlas_test_(${name} integration 300 ${ARGN})
endfunction()

# atlas_stack_test(NAME [LIBS lib...] [TIMEOUT s] [DEPENDS program...])
# An integration test against the whole stack (tests/integration/sw_stack.c: PostgreSQL,
# hsm-sim, issuer-sim, switchd, acquirer-sim): tests/integration/NAME.c with the stack
# helpers, built after the programs it runs (those four and DEPENDS).
function(atlas_stack_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "LIBS;DEPENDS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(dir ${CMAKE_SOURCE_DIR}/tests/integration)
  atlas_integration_test(${name}
    SOURCES ${dir}/${name}.c ${dir}/sw_stack.c ${dir}/db_testlib.c
    LIBS atlas_acquirer atlas_db PkgConfig::LIBPQ ${T_LIBS}
    TIMEOUT ${T_TIMEOUT})
  target_include_directories(${name} PRIVATE ${dir})
  add_dependencies(${name} switchd hsm-sim acquirer-sim issuer-sim ${T_DEPENDS})
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
