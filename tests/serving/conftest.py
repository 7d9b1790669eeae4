"""Fixtures shared by the serving tests."""
import pytest
from engine_testing import open_gates


@pytest.fixture(autouse=True)
def _open_gates_after_test():
    yield
    open_gates()


@pytest.fixture
def every_style(bot):
    """Models for every style of the tiny config, so a service can be ready."""
    for i, style in enumerate(bot.book().names()):
        bot.save_artifact(style, seed=i)
    book = bot.book()
    return book, {name: style.model_dir for name, style in book.styles.items()}
