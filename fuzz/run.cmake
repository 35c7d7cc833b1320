# One ctest fuzz run (fuzz/CMakeLists.txt registers it):
#   cmake -DFUZZER=bin -DNAME=fuzz_x -DSRC=fuzz/ -DWORK=dir -DSECONDS=60 -P run.cmake
# Replays every saved reproducer in SRC/regress/NAME/ once, then fuzzes
# for SECONDS over a fresh copy of SRC/corpus/NAME/ in WORK/corpus (so the
# committed corpus never grows), with SRC/NAME.dict. Crash, leak and
# timeout inputs land in WORK/. Fails on any finding.
foreach(var FUZZER NAME SRC WORK SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake: -D${var}= is required")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus)
file(GLOB seeds ${SRC}/corpus/${NAME}/*)
if(seeds)
  file(COPY ${seeds} DESTINATION ${WORK}/corpus)
endif()

set(common -rss_limit_mb=2048 -timeout=10 -artifact_prefix=${WORK}/)
if(EXISTS ${SRC}/${NAME}.dict)
  list(APPEND common -dict=${SRC}/${NAME}.dict)
endif()

file(GLOB repros ${SRC}/regress/${NAME}/*)
if(repros)
  execute_process(COMMAND ${FUZZER} ${common} ${repros} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NAME}: a saved reproducer fails again (exit ${rc})")
  endif()
endif()

execute_process(COMMAND ${FUZZER} ${common} -max_total_time=${SECONDS} -print_final_stats=1
                        ${WORK}/corpus
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NAME}: libFuzzer found a problem (exit ${rc}); the input is in ${WORK}/")
endif()
