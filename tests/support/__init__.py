"""Test and benchmark support: doubles and helpers shared by tests (and by ``bench/``).

Never imported by a runtime package (``core``, ``adapters``, ``bots``), never installed:
``tests/test_architecture.py`` checks both. Pytest fixtures live in ``tests/conftest.py``;
what tests import by name lives here.

- :mod:`~tests.support.clock`: virtual time moved by hand (:class:`FakeClock`, :class:`FakeTime`)
  and :func:`settle`.
- :mod:`~tests.support.waiting`: :func:`until`, polling a fake's state.
- :mod:`~tests.support.harness`: what the Slack and Discord bot harnesses share.
- :mod:`~tests.support.protocols`: literal SSE bytes through a protocol's stream decoder.
- :mod:`~tests.support.weather`: a ``get_weather`` result.
"""
