"""Webhook endpoints: who hears about events, and how deliveries to them are retried."""
