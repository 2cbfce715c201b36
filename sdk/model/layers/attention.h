// The attention blocks of a decoder layer, forward and backward: GQA (attention.cpp) and
// Multi-head Latent Attention (mla.cpp). Input a.h1 [T, d] (the normed layer input), output
// a.att [T, heads * v_dim]. With a cache (inference) the keys and values are appended to the
// chunks' slots and the queries attend over each slot's history; without one (training) each
// sequence attends over its own rows and the layer keeps what the backward needs.
#pragma once
#include <cstdint>

#include "model/layers/decoder_layer.h"

namespace reason {

void gqa_forward(const LayerCtx& ctx, const DecoderLayer& ly, int64_t layer, LayerActs& a);
// dh1 [T, d] is overwritten with dL/dh1 given datt = dL/d(a.att).
void gqa_backward(const LayerCtx& ctx, const DecoderLayer& ly, const LayerActs& a, const float* datt, float* dh1,
                  const ParamGrads& g);

void mla_forward(const LayerCtx& ctx, const DecoderLayer& ly, int64_t layer, LayerActs& a);
void mla_backward(const LayerCtx& ctx, const DecoderLayer& ly, const LayerActs& a, const float* datt, float* dh1,
                  const ParamGrads& g);

}  // namespace reason
