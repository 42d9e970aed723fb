// Instantiates every function of the shared gate-math headers (csrc/cell/) in device code, so
// that tests/test_cell_math_device.py can check they compile for the GPU with nvcc.
#include "cell/lstm.h"
#include "cell/gru.h"
using namespace fastgates::cell;
template <typename T>
__global__ void k(const T* in, T* out) {
  LstmGates<T> pre{in[0], in[1], in[2], in[3]};
  T c, h, dcp;
  LstmGates<T> a = lstm_forward(pre, in[4], &c, &h);
  LstmGates<T> d = lstm_backward(a, c, in[4], in[5], in[6], &dcp);
  GruGates<T> x{in[0], in[1], in[2]}, hh{in[3], in[4], in[5]}, dx, dh;
  T hn;
  GruSaved<T> s = gru_forward(x, hh, in[6], &hn);
  T direct = gru_backward(s, in[6], in[7], &dx, &dh);
  out[0] = c + h + d.i + d.f + d.g + d.o + dcp + hn + direct + dx.r + dh.n;
}
template __global__ void k<float>(const float*, float*);
template __global__ void k<double>(const double*, double*);
