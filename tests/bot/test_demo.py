"""The terminal sampling demo (`python -m bot`) answers piped commands and never crashes."""
import subprocess
import sys

from conftest import child_env


def _chat(bot, lines: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "bot"], input=lines, capture_output=True,
                          text=True, env=child_env(bot.config), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout.splitlines()


def test_demo_answers_commands_from_piped_stdin(bot):
    bot.save_artifact("tiny")
    out = _chat(bot, "/tiny the cat\n/nosuch\n/fable bear\n/fable owl\n")
    help_end = next(i for i, line in enumerate(out) if line.startswith("Text after"))
    answers = out[help_end + 1:]
    assert any("/fable fox" in line for line in out[:help_end])  # help lists variants
    assert answers[0].startswith("the cat")  # the prime, continued
    assert answers[1].startswith("Sorry: unknown style 'nosuch'")
    assert "choose one of fox, owl" in answers[2]
    assert answers[3].startswith("Sorry, the fable owl model is unavailable")
