"""Compression Lab: `streamlit run app.py`. The page menu in the sidebar and the page it runs (ui.session.PAGES).

Streamlit's own menu (`st.navigation`) is drawn by the browser from one message per run; the `st.page_link`
menu it replaced was ten elements built in Python on every rerun of every session (a tenth of a slider move's
server time). The Overview is the default page, at the app's root URL.
"""
import streamlit as st

from ui.session import pages

st.navigation(pages(), expanded=True).run()
