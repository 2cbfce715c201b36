# ctest driver of example_csharp_grpo: runs `mono grpo-loop.exe MODEL STEPS`, echoes its output,
# and fails unless it exits 0 and printed a reward for each of the STEPS steps.
execute_process(COMMAND ${MONO} ${EXE} ${MODEL} ${STEPS}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grpo-loop.exe exited with ${rc}")
endif()
foreach(i RANGE 1 ${STEPS})
  if(NOT out MATCHES "step ${i}/${STEPS}  reward [0-9]+\\.[0-9]+")
    message(FATAL_ERROR "no reward printed for step ${i}")
  endif()
endforeach()
if(NOT out MATCHES "grpo: ${STEPS} steps, reward first")
  message(FATAL_ERROR "the loop did not finish")
endif()
