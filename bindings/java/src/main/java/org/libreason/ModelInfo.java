package org.libreason;

/** What a loaded model is. */
public record ModelInfo(String architecture, long vocabSize, long hiddenSize, long numLayers, long numParams,
    long numExperts) {}
