package org.libreason;

/**
 * What a loaded model is; device is "cpu" or "cuda", kvDType the KV cache's storage ("f32" or
 * "bf16"), quantizedWeights ggml's name of the first quantised weight's block type ("Q4_K",
 * "Q6_K", "Q8_0", ...) or "" when no weight is quantised, adapterModules the linear layers
 * carrying a LoRA adapter (0: none).
 */
public record ModelInfo(String architecture, long vocabSize, long hiddenSize, long numLayers, long numParams,
    long numExperts, String device, String kvDType, String quantizedWeights, long adapterModules) {}
