"""Pydantic models of the project's custom resources and the CRD schemas generated from them."""
