"""A Keras LSTM layer with a hand-written backward pass that batches the big matmuls.

Keras' generic LSTM (the CPU path; cuDNN is GPU-only) does six small matrix products
per time step: x@W and h@U forward, and four in the backward pass, including the weight
gradients accumulated one step at a time. Here only the products that *must* be
sequential stay in the loop (h@U forward, dz@U^T backward); x@W, dW, dU and dx are one
large matrix product each over all time steps, which a CPU runs near its peak.

Same maths, weights and initialisers as ``keras.layers.LSTM`` (gate order i, f, c, o,
sigmoid/tanh, forget bias 1), so the NumPy kernel and artifacts do not change; a test
checks outputs and gradients against ``keras.layers.LSTM``. TensorFlow backend only.
"""
from __future__ import annotations

import keras
import tensorflow as tf


def _gates(z):
    i, f, g, o = tf.split(z, 4, axis=-1)
    return tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)


@tf.custom_gradient
def fused_lstm(x, kernel, recurrent, bias):
    """x: (batch, time, in) -> h for every step (batch, time, units); zero initial state."""
    units = recurrent.shape[0]
    xt = tf.transpose(x, [1, 0, 2])  # time-major
    steps, batch = tf.shape(xt)[0], tf.shape(xt)[1]
    xw = tf.einsum("tbi,ij->tbj", xt, kernel) + bias
    zeros = tf.zeros([batch, units], x.dtype)

    def forward(t, h, c, hs, cs, gs):
        i, f, g, o = _gates(xw[t] + tf.matmul(h, recurrent))
        c = f * c + i * g
        h = o * tf.tanh(c)
        return (t + 1, h, c, hs.write(t, h), cs.write(t, c),
                gs.write(t, tf.concat([i, f, g, o], axis=-1)))

    def array(width):
        return tf.TensorArray(x.dtype, size=steps, element_shape=tf.TensorShape([None, width]))

    _, _, _, hs, cs, gs = tf.while_loop(
        lambda t, *_: t < steps, forward,
        (0, zeros, zeros, array(units), array(units), array(4 * units)))
    # Kept for the backward pass: h, c and the activated gates of every step.
    hs, cs, gs = hs.stack(), cs.stack(), gs.stack()

    def grad(dy):
        h_prev = tf.concat([zeros[None], hs[:-1]], axis=0)
        c_prev = tf.concat([zeros[None], cs[:-1]], axis=0)
        dyt = tf.transpose(dy, [1, 0, 2])

        def backward(t, dh_next, dc_next, dzs):
            i, f, g, o = tf.split(gs[t], 4, axis=-1)
            tc = tf.tanh(cs[t])
            dh = dyt[t] + dh_next
            dc = dc_next + dh * o * (1.0 - tc * tc)
            dz = tf.concat([dc * g * i * (1.0 - i), dc * c_prev[t] * f * (1.0 - f),
                            dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=-1)
            return (t - 1, tf.matmul(dz, recurrent, transpose_b=True), dc * f,
                    dzs.write(t, dz))

        _, _, _, dzs = tf.while_loop(lambda t, *_: t >= 0, backward,
                                     (steps - 1, zeros, zeros, array(4 * units)))
        dz = dzs.stack()  # (time, batch, 4 units)
        dx = tf.transpose(tf.einsum("tbj,ij->tbi", dz, kernel), [1, 0, 2])
        return (dx, tf.einsum("tbi,tbj->ij", xt, dz), tf.einsum("tbh,tbj->hj", h_prev, dz),
                tf.reduce_sum(dz, axis=[0, 1]))

    return tf.transpose(hs, [1, 0, 2]), grad


# The registered name is stored in every checkpoint.keras: it stays "genmodels>FusedLSTM" so
# checkpoints written before the layer moved to training/ still resume.
@keras.saving.register_keras_serializable(package="genmodels")
class FusedLSTM(keras.layers.Layer):
    """Drop-in for ``keras.layers.LSTM(units, return_sequences=True)`` when training."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        n_in, units = input_shape[-1], self.units
        self.kernel = self.add_weight((n_in, 4 * units), "glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight((units, 4 * units), "orthogonal",
                                                name="recurrent_kernel")

        def bias_init(shape, dtype=None):  # forget-gate bias 1, as Keras' unit_forget_bias
            return tf.concat([tf.zeros([units]), tf.ones([units]), tf.zeros([2 * units])], 0)

        self.bias = self.add_weight((4 * units,), bias_init, name="bias")

    def call(self, x):
        # Under a mixed policy x arrives in the compute dtype; the weights stay float32.
        weights = (self.kernel.value, self.recurrent_kernel.value, self.bias.value)
        return fused_lstm(x, *(tf.cast(w, x.dtype) for w in weights))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return super().get_config() | {"units": self.units}
