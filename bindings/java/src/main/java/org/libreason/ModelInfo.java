package org.libreason;

/**
 * What a loaded model is; device is "cpu" or "cuda", kvDType the KV cache's storage ("f32" or
 * "bf16").
 */
public record ModelInfo(String architecture, long vocabSize, long hiddenSize, long numLayers, long numParams,
    long numExperts, String device, String kvDType) {}
