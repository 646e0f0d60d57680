"""The service's HTTP routes, one router per concern: predict, model (card, admin), health (ops), web page."""
