"""Errors of the scheduler package (STYLE.md section 7).

* ``SchedulerConfigError``: a bad setting (``num_schedulers``, ``enabled_schedulers``,
  broker timeouts); raised by constructors and config parsing, so a bad flag fails at
  start and a bad PUT changes nothing. It is also a ``ValueError``.
* ``BrokerError``: an eval-broker call that was refused and changed nothing. Its
  subclasses name the condition, after Nomad's ``ErrNotOutstanding`` and
  ``ErrTokenMismatch`` (``nomad/eval_broker.go``):

  - ``EvalNotOutstanding``: ack/nack of an evaluation that is not delivered now (never
    dequeued, already acked, or redelivered after its nack timeout);
  - ``TokenMismatch``: the evaluation is outstanding under another token (an older
    delivery that timed out and was given to another worker);
  - ``BrokerDisabled``: this server's broker is off (it is not the leader).
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error raised by the scheduler package."""


class SchedulerConfigError(SchedulerError, ValueError):
    """A scheduler setting is invalid; nothing was changed."""


class BrokerError(SchedulerError):
    """The eval broker refused a call; the broker's state did not change."""


class EvalNotOutstanding(BrokerError):
    """The evaluation is not delivered and unacknowledged right now."""


class TokenMismatch(BrokerError):
    """The evaluation is outstanding, but under a different delivery token."""


class BrokerDisabled(BrokerError):
    """The broker is disabled: only the leader brokers evaluations."""
