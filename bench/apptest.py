"""AppTest set-up shared by the page tests and the page benchmark."""

from __future__ import annotations


def route_apptest_through_app() -> None:
    """Make every AppTest run go through app.py, as a real server's runs do after its first.

    AppTest resets `PagesManager.uses_pages_directory` before every run, so with `pages/` beside
    app.py each run would start in Streamlit's old pages-folder mode and hand over to the router
    with a rerun (ui.routing.leave_pages_folder_mode), which drops a form's submit click.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    class RoutedPagesManager(PagesManager):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            PagesManager.uses_pages_directory = False

    app_test.PagesManager = RoutedPagesManager  # type: ignore[attr-defined]
