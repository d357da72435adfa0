"""Who you are: accounts/, login/, keys/, windows/, audit/; principal.py and fields.py are what every domain shares."""
