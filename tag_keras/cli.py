"""`python -m tag_keras.cli`: `tag-select` (`tag_keras.select.cli`)."""

from tag_keras.select.cli import run

if __name__ == "__main__":
    run()
