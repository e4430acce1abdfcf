module github.com/berthd/berth

go 1.26
