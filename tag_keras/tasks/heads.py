"""What each task's head predicts: classifiers and the loss of each label.

Classification is recognised from the loss itself: a head is a
classifier when its loss is a log-loss, i.e. exp(−loss) summed over the
labels the head can take is 1 (softmax with sparse or one-hot labels,
one sigmoid unit with 0/1 labels), whether the outputs are logits or
probabilities. A head of several units with multi-hot labels is
multi-label when its loss is the mean of independent Bernoulli log-losses
(binary cross-entropy over sigmoid units): additive in the labels, with
each unit's probability read from the loss of that unit alone.
"""

import numpy as np

from tag_keras._tensorflow import tf

#: How far exp(−loss) summed over a head's labels may be from 1.
_PROBABILITY_TOLERANCE = 1e-3


class HeadLosses:
    """The kind of each task's head and the loss of each label it can take.

    Args:
        view: The `TaskView` (its `tasks` and `example_losses`).
        y: One batch of labels, a dict keyed by task (NumPy).
        outputs: The model's outputs on that batch.
    """

    def __init__(self, view, y, outputs):
        self._view = view
        self._label_specs = {
            t: (np.asarray(y[t]).shape[1:], np.asarray(y[t]).dtype)
            for t in view.tasks
            if t in y
        }
        self._widths = {t: int(outputs[t].shape[-1]) for t in view.tasks}
        self._classifier = {
            t: self._is_classifier(t, outputs[t]) for t in view.tasks
        }
        self._multi_label = {
            t: not self._classifier[t] and self._is_multi_label(t, outputs[t])
            for t in view.tasks
        }

    def is_classifier(self, task):
        """Whether `task`'s loss is a log-loss over a few labels."""
        return self._classifier[task]

    def is_multi_label(self, task):
        """Whether `task`'s loss is the mean over its units of independent
        Bernoulli log-losses (several sigmoid units, multi-hot labels)."""
        return self._multi_label[task]

    def unit_losses(self, task, y_pred):
        """`[batch, w + 1]`: the loss of no label and of each unit alone."""
        width = self._widths[task]
        labels = tf.concat([tf.zeros([1, width]), tf.eye(width)], axis=0)
        labels = tf.broadcast_to(
            labels[:, None, :],
            tf.concat([[width + 1], tf.shape(y_pred)[:1], [width]], axis=0),
        )
        return self.losses_for_labels(task, labels, y_pred)

    def unit_probabilities(self, task, y_pred, losses=None):
        """`[batch, w]`: each unit's predicted probability (multi-label
        heads): from ℓ_u(1) − ℓ_u(0) = w (loss(e_u) − loss(0)) =
        log((1 − p_u) / p_u)."""
        losses = self.unit_losses(task, y_pred) if losses is None else losses
        width = self._widths[task]
        return tf.sigmoid(-width * (losses[:, 1:] - losses[:, :1]))

    def candidate_losses(self, task, y_pred):
        """`[batch, labels]`: the loss of each label the head can take.

        Only for classification heads; exp(−value) is the predicted
        probability of each label.
        """
        labels = self._candidates(task, y_pred)
        return self.losses_for_labels(task, labels, y_pred)

    def losses_for_labels(self, task, labels, y_pred):
        """`[batch, m]`: the loss of `labels[j]` for each of m label sets.

        `labels` is `[m, batch, ...]`; computed in one vectorised call on
        the predictions repeated m times.
        """
        count = tf.shape(labels)[0]
        batch = tf.shape(y_pred)[0]
        flat = tf.reshape(
            labels, tf.concat([[count * batch], tf.shape(labels)[2:]], axis=0)
        )
        repeated = tf.reshape(
            tf.repeat(y_pred[None], count, axis=0),
            tf.concat([[count * batch], tf.shape(y_pred)[1:]], axis=0),
        )
        losses = self._view.example_losses(task, flat, repeated)
        return tf.transpose(tf.reshape(losses, [count, batch]))

    def classes(self, task, labels):
        """`[batch]` int: each label as a class index (classifiers only)."""
        labels = np.asarray(labels)
        shape, _ = self._label_specs[task]
        width = self._widths[task]
        if width > 1 and tuple(shape[-1:]) == (width,):
            return labels.reshape(len(labels), width).argmax(axis=1)
        return np.rint(labels.reshape(len(labels))).astype(int)

    def _candidates(self, task, y_pred):
        """`[labels, batch, ...]`: every label, for every example.

        0 and 1 for one unit; each class index (sparse labels) or one-hot
        row otherwise.
        """
        shape, _ = self._label_specs[task]
        width = self._widths[task]
        if width > 1 and tuple(shape[-1:]) == (width,):
            labels = tf.eye(width)[:, None, :]
        else:
            count = 2 if width == 1 else width
            labels = tf.reshape(
                tf.range(count, dtype=tf.float32),
                [count, 1] + [1] * len(shape),
            )
        full = tf.concat(
            [
                tf.shape(labels)[:1],
                tf.shape(y_pred)[:1],
                tf.constant(shape, tf.int32),
            ],
            axis=0,
        )
        return tf.broadcast_to(labels, full)

    def _is_classifier(self, task, y_pred):
        if task not in self._label_specs:
            return False
        shape, _ = self._label_specs[task]
        width = self._widths[task]
        if width > 1 and tuple(shape[-1:]) not in ((), (1,), (width,)):
            return False
        total = np.exp(-self.candidate_losses(task, y_pred).numpy()).sum(1)
        return bool(np.all(np.abs(total - 1.0) < _PROBABILITY_TOLERANCE))

    def _is_multi_label(self, task, y_pred):
        if task not in self._label_specs:
            return False
        shape, _ = self._label_specs[task]
        width = self._widths[task]
        if width < 2 or tuple(shape[-1:]) != (width,):
            return False
        losses = self.unit_losses(task, y_pred)
        p = self.unit_probabilities(task, y_pred, losses).numpy()
        none = losses[:, 0].numpy()
        every = self.losses_for_labels(
            task, tf.ones(tf.concat([[1], tf.shape(y_pred)], 0)), y_pred
        )[:, 0].numpy()
        # Bernoulli units: loss(0) = mean −log(1 − p_u); additive in y.
        normal = np.mean(-np.log(np.clip(1 - p, 1e-30, 1)), axis=1)
        additive = none + np.sum(losses[:, 1:].numpy() - none[:, None], 1)
        scale = 1 + np.abs(none)
        return bool(
            np.all(np.abs(normal - none) < _PROBABILITY_TOLERANCE * scale)
            and np.all(
                np.abs(additive - every) < _PROBABILITY_TOLERANCE * scale
            )
        )
