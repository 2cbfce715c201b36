# example_go_cli: runs reason-go generate, score and train against the addition fixture and
# checks what each prints.
set(template "User: {prompt}\\nAssistant:")
function(run name regex)
  execute_process(COMMAND ${REASON_GO} ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  list(JOIN ARGN " " shown)
  message("$ reason-go ${shown}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "reason-go ${name} exited with ${rc}")
  endif()
  if(NOT out MATCHES "${regex}")
    message(FATAL_ERROR "reason-go ${name}: output does not match ${regex}")
  endif()
endfunction()

file(REMOVE_RECURSE ${OUT})
# Greedy: the base model answers 23 + 45 with \boxed{68}, streamed token by token.
run(generate "\\\\boxed{68}.*\\[[0-9]+ tokens, finish: stop\\]"
    generate -model ${MODEL} -template ${template} -max-tokens 48 "What is 23 + 45?")
run(generate-pull "\\\\boxed{"
    generate -model ${MODEL} -template ${template} -max-tokens 48 -pull "What is 17 + 38?")
run(score "position\ttoken\tlogprob\ttext\n1\t[0-9]+\t-?[0-9]+\\.[0-9]+\t.*total logprob -?[0-9]+\\.[0-9]+ over [0-9]+ tokens, perplexity [0-9]+\\.[0-9]+"
    score -model ${MODEL} -template ${template} "What is 23 + 45?")
run(train "step 1: reward_mean=[0-9.]+ reward_std=[0-9.]+ loss=[-0-9.e]+ grad_norm=[0-9.e+-]+ .*step 2: .*step 3: .*saved"
    train -model ${MODEL} -problems ${PROBLEMS} -template ${template} -steps 3 -prompts 2 -group 4 -out ${OUT}/ckpt)
if(NOT EXISTS ${OUT}/ckpt/model.safetensors)
  message(FATAL_ERROR "train -out: no ${OUT}/ckpt/model.safetensors")
endif()
# The trained checkpoint loads and generates.
run(generate-ckpt "tokens, finish:"
    generate -model ${OUT}/ckpt -template ${template} -max-tokens 16 "What is 23 + 45?")
# A bad model path: the library's error code and the path, exit status 1.
execute_process(COMMAND ${REASON_GO} generate -model ${OUT}/missing "x" OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
message("$ reason-go generate -model ${OUT}/missing x\n${err}")
if(NOT rc EQUAL 1 OR NOT err MATCHES "REASON_ERR_IO: .*${OUT}/missing")
  message(FATAL_ERROR "bad model path: exit ${rc}, ${err}")
endif()
file(REMOVE_RECURSE ${OUT})
